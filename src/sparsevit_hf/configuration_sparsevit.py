"""Configuration of SparseViT (Su et al., AAAI 2025)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# The published schedule: stage 3 runs S = 8, 4, 2, 1 for five blocks each, stage 4 runs S = 2 then S = 1.
PUBLISHED_SPARSITY_RATES = ([8] * 5 + [4] * 5 + [2] * 5 + [1] * 5, [2] * 4 + [1] * 3)
# The LFF head fuses the output of every block where the stage-3 schedule changes S, and stage 4's blocks 4 and 7
# (0-based indices inside each attention stage).
PUBLISHED_FUSED_BLOCKS = ([4, 9, 14, 19], [3, 6])
# Named model sizes for `SparseViTConfig.from_preset`: `published` is the paper's model (50 M parameters), `small`
# (2.8 M) trains in minutes on a CPU at 128-256 px, `tiny` (0.1 M) is for tests and smoke runs. The sparsity schedule
# and fused blocks of the smaller sizes are the published ones resampled to their depths (`scaled_sparsity_schedule`).
PRESETS = {
    "published": {},
    "small": {
        "hidden_sizes": [32, 64, 128, 256],
        "depths": [1, 2, 4, 2],
        "attention_head_size": 32,
        "fusion_hidden_size": 256,
        "drop_path_rate": 0.1,
    },
    "tiny": {
        "hidden_sizes": [8, 16, 32, 64],
        "depths": [1, 1, 2, 2],
        "attention_head_size": 16,
        "fusion_hidden_size": 32,
        "drop_path_rate": 0.0,
    },
}
# The model predicts one channel, the probability of "manipulated"; its two classes are named by `id2label`.
DEFAULT_ID2LABEL = {0: "authentic", 1: "manipulated"}
# Where a saved folder's code lives, for `trust_remote_code=True` loading. `save_pretrained` only adds the Auto class
# of the object being saved, so the config names all four up front.
AUTO_MAP = {
    "AutoConfig": "configuration_sparsevit.SparseViTConfig",
    "AutoModel": "modeling_sparsevit.SparseViTModel",
    "AutoModelForSemanticSegmentation": "modeling_sparsevit.SparseViTForManipulationLocalization",
    "AutoImageProcessor": "image_processing_sparsevit.SparseViTImageProcessor",
}


def _run_ends(rates: list[int]) -> list[int]:
    """Indices of the last block of every run of equal sparsity rate (the blocks the fusion head reads)."""
    return [i for i in range(len(rates)) if i == len(rates) - 1 or rates[i + 1] != rates[i]]


def scaled_sparsity_schedule(depth3: int, depth4: int) -> tuple[list[list[int]], list[list[int]]]:
    """The published sparsity schedule resampled to other stage depths, keeping its pattern.

    Block `i` of a stage of depth `d` takes the rate of the published block at the centre of its share,
    `floor((i + 0.5) * D / d)` (D the published depth), so stage 3 of depth 4 runs S = 8, 4, 2, 1 and stage 4 of
    depth 2 runs S = 2, 1. As in the paper, the fusion head reads the last block of every run of equal S (the
    published `fused_blocks` are exactly those). Returns `(sparsity_rates, fused_blocks)`.
    """
    rates = []
    for depth, published in zip((depth3, depth4), PUBLISHED_SPARSITY_RATES):
        if depth < 1:
            raise ValueError(f"attention stage depths must be positive, got {depth3}, {depth4}")
        last = len(published) - 1
        rates.append([published[min(last, int((i + 0.5) * len(published) / depth))] for i in range(depth)])
    return rates, [_run_ends(stage) for stage in rates]


@strict
class SparseViTConfig(PreTrainedConfig):
    r"""
    Configuration of a SparseViT model. The defaults build the published model (50.2 M parameters once the dead
    parameters of the official code are dropped).

    The network has four stages. Stages 1-2 are UniFormer convolution blocks; stages 3-4 are sparse self-attention
    blocks, where a block with sparsity rate S lets token (i, j) attend only to the tokens (i', j') with
    i' = i (mod S) and j' = j (mod S). S is stored per block, so any input size keeps the paper's meaning.

    Args:
        num_channels (`int`, defaults to 3): Number of input channels.
        hidden_sizes (`list[int]`, defaults to `[64, 128, 320, 512]`): Width of each stage.
        depths (`list[int]`, defaults to `[5, 8, 20, 7]`): Number of blocks in each stage.
        patch_sizes (`list[int]`, defaults to `[4, 2, 2, 2]`): Kernel size and stride of each stage's downsampling
            convolution. Their product (32 by default) is the factor by which inputs are padded.
        attention_head_size (`int`, defaults to 64): Channels per attention head of stages 3-4.
        mlp_ratio (`float`, defaults to 4.0): Hidden width of every MLP relative to its stage width.
        sparsity_rates (`list[list[int]]`): One list per attention stage (3 and 4) holding the sparsity rate S of
            each block. S = 1 is global attention.
        fused_blocks (`list[list[int]]`): One list per attention stage with the 0-based indices of the blocks
            whose outputs feed the Learnable Feature Fusion head. The last block of each attention stage must be
            listed: its output passes through the stage's final LayerNorm before fusion.
        fusion_hidden_size (`int`, defaults to 512): Width at which the fused maps are summed.
        hidden_act (`str`, defaults to `"gelu"`): Activation of every MLP.
        layer_scale_init_value (`float`, defaults to 1e-6): Initial value of the layer-scale vectors of the
            attention blocks and of the fusion weights.
        drop_path_rate (`float`, defaults to 0.2): Stochastic depth rate, rising linearly over all blocks.
        attention_dropout (`float`, defaults to 0.0): Dropout on the attention probabilities.
        layer_norm_eps (`float`, defaults to 1e-6): Epsilon of the block, stage and fusion LayerNorms.
        patch_embedding_layer_norm_eps (`float`, defaults to 1e-5): Epsilon of the patch embedding LayerNorms.
        initializer_range (`float`, defaults to 0.02): Std of the truncated normal init of Linear layers.
        official_grouping_size (`int`, *optional*): Off by default. When set (the official code's value is 512),
            the attention blocks group tokens as the official code does: it stores, per block, the group side
            L = (token grid side at a square input of this many pixels) // S, e.g. 32 // S in stage 3 and 16 // S in
            stage 4 for 512, and at any input size an axis of n tokens gets the rate max(1, n // L). At that input
            size nothing changes (for rates that divide its grid, as the published ones do); at 1024 x 1024 every
            rate doubles, the "global" S = 1 blocks included. Use it to reproduce the official model's outputs at
            sizes other than 512 (the official code is defined on square inputs whose grids are multiples of L;
            the rule applies per axis elsewhere). Without it, S is kept at every size (the paper's meaning).
        dice_loss_weight (`float`, defaults to 0.0): Weight of a soft Dice term added to the binary cross-entropy
            training loss (0: the official loss, BCE alone). Small tampered regions are a few percent of the
            pixels, and BCE alone lets a model trained from scratch settle on "nothing is manipulated"; the Dice
            term, computed over the whole batch, pays for the overlap with the regions whatever their size.

    The head has a single output channel (the logit of "manipulated"), so the labels are always two classes:
    `id2label` defaults to `{0: "authentic", 1: "manipulated"}` (the names may change), and any other `num_labels`
    is an error. `SparseViTConfig.from_preset("small")` builds a named size (`PRESETS`).
    """

    model_type = "sparsevit"
    attribute_map = {"hidden_size": "fusion_hidden_size"}

    num_channels: int = 3
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 320, 512)
    depths: list[int] | tuple[int, ...] = (5, 8, 20, 7)
    patch_sizes: list[int] | tuple[int, ...] = (4, 2, 2, 2)
    attention_head_size: int = 64
    mlp_ratio: float | int = 4.0
    sparsity_rates: list[list[int]] | tuple | None = None
    fused_blocks: list[list[int]] | tuple | None = None
    fusion_hidden_size: int = 512
    hidden_act: str = "gelu"
    layer_scale_init_value: float = 1e-6
    drop_path_rate: float | int = 0.2
    attention_dropout: float | int = 0.0
    layer_norm_eps: float = 1e-6
    patch_embedding_layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    official_grouping_size: int | None = None
    dice_loss_weight: float | int = 0.0

    def __post_init__(self, **kwargs):
        if self.sparsity_rates is None:
            self.sparsity_rates = [list(rates) for rates in PUBLISHED_SPARSITY_RATES]
        if self.fused_blocks is None:
            self.fused_blocks = [list(blocks) for blocks in PUBLISHED_FUSED_BLOCKS]
        self.hidden_sizes = list(self.hidden_sizes)
        self.depths = list(self.depths)
        self.patch_sizes = list(self.patch_sizes)
        self.sparsity_rates = [list(rates) for rates in self.sparsity_rates]
        self.fused_blocks = [list(blocks) for blocks in self.fused_blocks]
        self.auto_map = {**AUTO_MAP, **(kwargs.pop("auto_map", None) or {})}
        _check_num_labels(kwargs.get("num_labels"))
        if self.id2label is None:
            self.id2label = dict(DEFAULT_ID2LABEL)
        _check_num_labels(len(self.id2label), f"id2label {self.id2label}")
        if self.label2id is None:
            self.label2id = {name: int(index) for index, name in self.id2label.items()}
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "SparseViTConfig":
        """As `PreTrainedConfig.from_dict`, but the config of another architecture is refused: its fields would be
        set as attributes (some clash with SparseViT's properties) and fail far from the cause."""
        model_type = config_dict.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(
                f"model_type {model_type!r} is not {cls.model_type!r}: this config describes another architecture, "
                "not a SparseViT model."
            )
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "SparseViTConfig":
        """As `PreTrainedConfig.from_pretrained`; a folder or repository of another architecture raises a
        `ValueError` that names it and its `model_type`."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except ValueError as error:
            if not str(error).startswith("model_type "):
                raise
            raise ValueError(f"{pretrained_model_name_or_path}: {error}") from None

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "SparseViTConfig":
        """The configuration of a named size (`PRESETS`: `published`, `small`, `tiny`), with keyword overrides.

        Unless given, `sparsity_rates` and `fused_blocks` follow the published pattern at the final `depths`
        (`scaled_sparsity_schedule`), so `from_preset("small", depths=[1, 2, 8, 3])` is consistent.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[name], **kwargs}
        depths = values.get("depths", cls.depths)
        rates, fused = scaled_sparsity_schedule(depths[2], depths[3])
        values.setdefault("sparsity_rates", rates)
        values.setdefault("fused_blocks", [_run_ends(list(stage)) for stage in values["sparsity_rates"]])
        return cls(**values)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, num_labels: int):
        _check_num_labels(num_labels)

    @property
    def num_hidden_layers(self) -> int:
        return sum(self.depths)

    @property
    def num_attention_heads(self) -> list[int]:
        return [width // self.attention_head_size for width in self.hidden_sizes[2:]]

    @property
    def pad_size_divisor(self) -> int:
        """Inputs are padded to a multiple of this, so that every downsampling convolution tiles exactly."""
        divisor = 1
        for size in self.patch_sizes:
            divisor *= size
        return divisor

    def official_group_side(self, stage: int, sparsity_rate: int) -> int | None:
        """Group side of a block of attention stage `stage` (2 or 3, 0-based) under `official_grouping_size`, or
        None when the option is off."""
        if self.official_grouping_size is None:
            return None
        stride = 1
        for size in self.patch_sizes[: stage + 1]:
            stride *= size
        return max(1, (self.official_grouping_size // stride) // sparsity_rate)

    @property
    def fusion_stride(self) -> int:
        """Stride of the logit map with respect to the input (16 for the published model)."""
        return self.pad_size_divisor // self.patch_sizes[-1]

    def validate_architecture(self):
        for name in ("hidden_sizes", "depths", "patch_sizes"):
            value = getattr(self, name)
            if len(value) != 4:
                raise ValueError(f"`{name}` must have one entry per stage (4), got {value}.")
            if any(v < 1 for v in value):
                raise ValueError(f"Every entry of `{name}` must be positive, got {value}.")
        if self.attention_head_size < 1:
            raise ValueError(f"`attention_head_size` must be positive, got {self.attention_head_size}.")
        for stage, width in zip((3, 4), self.hidden_sizes[2:]):
            if width % self.attention_head_size:
                raise ValueError(
                    f"`hidden_sizes[{stage - 1}]` ({width}, the width of attention stage {stage}) must be a multiple "
                    f"of `attention_head_size` ({self.attention_head_size})."
                )
        if len(self.sparsity_rates) != 2:
            raise ValueError(
                f"`sparsity_rates` must hold one list per attention stage (stages 3 and 4), got "
                f"{len(self.sparsity_rates)} lists."
            )
        for stage, rates, depth in zip((3, 4), self.sparsity_rates, self.depths[2:]):
            if len(rates) != depth:
                raise ValueError(
                    f"`sparsity_rates` of stage {stage} has {len(rates)} entries but `depths[{stage - 1}]` is {depth}: "
                    "give one sparsity rate per block."
                )
            if any(not isinstance(rate, int) or rate < 1 for rate in rates):
                raise ValueError(f"`sparsity_rates` of stage {stage} must be positive integers, got {rates}.")
        if len(self.fused_blocks) != 2:
            raise ValueError(
                f"`fused_blocks` must hold one list per attention stage (stages 3 and 4), got "
                f"{len(self.fused_blocks)} lists."
            )
        for stage, blocks, depth in zip((3, 4), self.fused_blocks, self.depths[2:]):
            if sorted(set(blocks)) != list(blocks):
                raise ValueError(f"`fused_blocks` of stage {stage} must be strictly increasing, got {blocks}.")
            if any(not 0 <= block < depth for block in blocks):
                raise ValueError(
                    f"`fused_blocks` of stage {stage} names blocks {blocks}, but the stage has blocks 0-{depth - 1}."
                )
            if not blocks or blocks[-1] != depth - 1:
                raise ValueError(
                    f"`fused_blocks` of stage {stage} must end with the stage's last block ({depth - 1}), whose "
                    f"normalised output the fusion head uses; got {blocks}."
                )
        if self.official_grouping_size is not None and (
            self.official_grouping_size < self.pad_size_divisor or self.official_grouping_size % self.pad_size_divisor
        ):
            raise ValueError(
                f"`official_grouping_size` must be a positive multiple of {self.pad_size_divisor} (the product of "
                f"`patch_sizes`), or None; got {self.official_grouping_size}."
            )
        if self.fusion_hidden_size < 1:
            raise ValueError(f"`fusion_hidden_size` must be positive, got {self.fusion_hidden_size}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"`drop_path_rate` must be in [0, 1), got {self.drop_path_rate}.")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"`attention_dropout` must be in [0, 1), got {self.attention_dropout}.")


def _check_num_labels(num_labels: int | None, what: str | None = None) -> None:
    if num_labels is not None and num_labels != 2:
        raise ValueError(
            f"SparseViT predicts one channel, the probability that a pixel is manipulated, so its labels are always "
            f"two classes ({{0: 'authentic', 1: 'manipulated'}}; the names may change), got "
            f"{what or f'num_labels={num_labels}'}."
        )


__all__ = ["SparseViTConfig"]
