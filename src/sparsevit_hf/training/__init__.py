"""Training SparseViT with Accelerate: the loop behind `examples/run_iml.py` and the parts it is made of.

- `arguments`: `TrainingArguments`, what a run does (the official recipe by default);
- `data`: loading the training specs, the epoch sampler and the augmented, reproducibly seeded training view;
- `optimization`: AdamW parameter groups and the warm-up + cosine schedule;
- `checkpoints`: atomic, resumable checkpoints and the run's JSON files;
- `checkpoint_weights`: the model weights of a checkpoint written by any engine (DDP, FSDP, DeepSpeed);
- `model_folders`: the output and best-model folders (`save_pretrained` / `from_pretrained`);
- `hub_sync`: background pushes of the output folder to the Hub;
- `distributed`: the engine asked for against the one obtained, and parameter layouts that suit DDP;
- `run_card`: the run's settings and model-card fields;
- `loop`: `IMLTrainer`, which ties them together.

Evaluation (the loop, named sets, robustness perturbations, trivial baselines) is `sparsevit_hf.evaluation`; size
presets are `SparseViTConfig.from_preset`.
"""

from .arguments import TrainingArguments
from .checkpoint_weights import checkpoint_state_dict, export_checkpoint_model
from .checkpoints import (
    CHECKPOINT_PREFIX,
    COMPLETE_MARKER,
    TRAINING_STATE_NAME,
    ResumeError,
    TrainingProgress,
    check_run_shape,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    resolve_checkpoint,
    rotate_checkpoints,
    run_shape,
    save_checkpoint,
    write_history,
    write_json_atomic,
)
from .data import EpochSampler, IMLTrainingDataset, TrainingData, batch_seed, load_training_data, training_loader
from .distributed import engine_mismatch, log_distributed_setup, requested_engine, use_channels_last_parameters
from .hub_sync import HubSync
from .loop import IMLTrainer, is_better
from .model_folders import BEST_MODEL_DIR, load_best_model, save_best_model, save_model_folder
from .optimization import create_lr_scheduler, create_optimizer, no_weight_decay, parameter_groups
from .run_card import card_run_info, is_hub_id, run_settings

__all__ = [
    "BEST_MODEL_DIR",
    "CHECKPOINT_PREFIX",
    "COMPLETE_MARKER",
    "EpochSampler",
    "HubSync",
    "IMLTrainer",
    "IMLTrainingDataset",
    "ResumeError",
    "TRAINING_STATE_NAME",
    "TrainingArguments",
    "TrainingData",
    "TrainingProgress",
    "batch_seed",
    "card_run_info",
    "check_run_shape",
    "checkpoint_state_dict",
    "create_lr_scheduler",
    "create_optimizer",
    "engine_mismatch",
    "export_checkpoint_model",
    "is_better",
    "is_hub_id",
    "latest_checkpoint",
    "list_checkpoints",
    "load_best_model",
    "load_training_state",
    "load_training_data",
    "log_distributed_setup",
    "no_weight_decay",
    "parameter_groups",
    "requested_engine",
    "resolve_checkpoint",
    "rotate_checkpoints",
    "run_settings",
    "run_shape",
    "save_best_model",
    "save_checkpoint",
    "save_model_folder",
    "training_loader",
    "use_channels_last_parameters",
    "write_history",
    "write_json_atomic",
]
