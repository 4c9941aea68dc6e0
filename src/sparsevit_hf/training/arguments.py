"""What a training run does: the settings `IMLTrainer` follows and the model card describes.

`examples/run_iml.py` parses its command line into these fields (the flags have the same names). The defaults are
the official recipe. How the model and data are built (presets, checkpoints, data specs) is the caller's business;
the fields about them here only describe the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..evaluation.robustness import Perturbation


@dataclass
class TrainingArguments:
    output_dir: str = "outputs/sparsevit-iml"

    # What was trained, for the card: a preset, a checkpoint to fine-tune, an ImageNet UniFormer-B backbone.
    model_preset: str | None = "published"
    model_name_or_path: str | None = None
    uniformer_checkpoint: str | None = None
    official_reinit: bool = False

    # Data: the specs (for the card), evaluation sets by name, sampling and batching.
    train_data: list[str] = field(default_factory=list)
    eval_sets: dict[str, str] = field(default_factory=dict)
    builtin_synthetic: bool = False  # trained on the built-in default data (no data given)
    samples_per_dataset: int | None = None  # per part and epoch; None: one pass (1840 per part when combined)
    image_size: int = 512
    augment: bool = True
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 16
    dataloader_num_workers: int = 2

    # Optimisation: AdamW, linear warm-up then a per-step half-cycle cosine to `min_lr`.
    learning_rate: float = 2e-4
    min_lr: float = 5e-7
    weight_decay: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_epochs: float = 4.0
    warmup_steps: int | None = None  # overrides warmup_epochs
    num_train_epochs: int = 200
    max_train_steps: int | None = None  # overrides num_train_epochs; the schedule spans it
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = None
    seed: int = 42

    # Evaluation and the best model.
    eval_every_epochs: int = 1  # 0: only at the end
    eval_steps: int | None = None
    metric_for_best_model: str | None = None  # "<set>/<metric>" (`resolve_metric_name`)
    greater_is_better: bool = True
    load_best_model_at_end: bool = False
    threshold: float = 0.5
    include_authentic: bool = False
    perturbations: list[Perturbation] = field(default_factory=list)  # robustness sweep at the end

    # Checkpoints: every N steps or "epoch", the last K kept; "latest" or a folder to resume from.
    checkpointing_steps: int | str | None = None
    save_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    allow_resume_mismatch: bool = False  # resume a checkpoint of another run shape (`checkpoints.run_shape`)

    # Logging.
    with_tracking: bool = False
    project_name: str = "sparsevit-iml"
    logging_steps: int = 50

    # Hub.
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_token: str | None = None
    hub_private_repo: bool = False
    push_checkpoints: bool = False

    @classmethod
    def from_namespace(cls, namespace: Any) -> TrainingArguments:
        """The fields of `namespace` (an `argparse.Namespace`) that name a field here."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in vars(namespace).items() if name in names})
