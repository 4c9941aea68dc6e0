"""SparseViT (Su et al., AAAI 2025): a UniFormer-style backbone with sparse self-attention and a Learnable Feature
Fusion head, for image manipulation localization.

Any input of at least 32 x 32 pixels is accepted. Inputs whose sides are not multiples of 32 (the product of the
patch sizes) are padded with zeros at the bottom and right, which in normalised space is the ImageNet mean colour;
hidden states cover the padded input, and the logits are cropped back to ceil(H / 16) x ceil(W / 16). When a token
grid is not a multiple of a block's sparsity rate S, the grid is padded inside that block and the padded tokens are
masked out of the attention, so every group is exactly the set of tokens S apart, as in the paper.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .attention_sparsevit import ATTENTION_FUNCTIONS, eager_attention_forward, group_tokens, ungroup_tokens
from .checks_sparsevit import check_labels, check_pixel_values
from .configuration_sparsevit import SparseViTConfig


@dataclass
class SparseViTModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_sizes[-1], height / 32, width / 32)`):
        Output of the last block, after the final LayerNorm, on the padded input.
    feature_maps (`tuple(torch.FloatTensor)`):
        The maps fed to the fusion head, one per entry of `config.fused_blocks` (stage 3 first): `(batch_size,
        hidden_sizes[2], height / 16, width / 16)` for stage 3 and `(batch_size, hidden_sizes[3], height / 32,
        width / 32)` for stage 4. The last map of each stage has passed through the stage's final LayerNorm.
    hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
        The patch embedding output of stage 1 and then the output of every block, each `(batch_size, channels,
        height, width)`.
    attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
        One tensor per attention block of shape `(batch_size, num_groups, num_heads, group_size, group_size)`:
        the attention probabilities inside each of the S x S groups of that block.
    """

    last_hidden_state: torch.FloatTensor | None = None
    feature_maps: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drops the whole residual branch per sample."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    keep = torch.empty(shape, dtype=hidden_states.dtype, device=hidden_states.device).bernoulli_(keep_prob)
    return hidden_states * keep / keep_prob


class SparseViTDropPath(nn.Module):
    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class SparseViTPatchEmbeddings(nn.Module):
    """Non-overlapping patch convolution followed by a LayerNorm over channels."""

    def __init__(self, config: SparseViTConfig, in_channels: int, out_channels: int, patch_size: int):
        super().__init__()
        self.projection = nn.Conv2d(in_channels, out_channels, kernel_size=patch_size, stride=patch_size)
        self.layernorm = nn.LayerNorm(out_channels, eps=config.patch_embedding_layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.projection(hidden_states)  # (batch, channels, height / p, width / p)
        hidden_states = self.layernorm(hidden_states.permute(0, 2, 3, 1))
        return hidden_states.permute(0, 3, 1, 2)


def elementwise_in_memory_order(function: Callable, hidden_states: torch.Tensor) -> torch.Tensor:
    """`function(hidden_states)` for an element-wise `function`, applied to a view that is contiguous in memory.

    The convolutions of the conv stages return (batch, C, H, W) maps laid out channels-last (the patch embedding's
    LayerNorm runs on channels-last tokens, and oneDNN keeps that layout). torch's CPU GELU takes a slow
    non-vectorised loop on such strided maps (2-3x slower, measured in bf16 and fp32); on the (batch, H, W, C) view,
    which is contiguous, it runs its vectorised kernel. The values are the same up to rounding.
    """
    if hidden_states.is_contiguous() or not hidden_states.is_contiguous(memory_format=torch.channels_last):
        return function(hidden_states)
    return function(hidden_states.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SparseViTConvMlp(nn.Module):
    def __init__(self, config: SparseViTConfig, width: int):
        super().__init__()
        hidden = int(width * config.mlp_ratio)
        self.fc1 = nn.Conv2d(width, hidden, kernel_size=1)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Conv2d(hidden, width, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.fc1(hidden_states)  # (batch, hidden, H, W), channels-last in memory on a CPU
        return self.fc2(elementwise_in_memory_order(self.activation, hidden_states))


class SparseViTConvBlock(nn.Module):
    """UniFormer's convolution block: depthwise positional conv, a local depthwise-conv "attention" and a conv MLP.

    It is deliberately not a `GradientCheckpointingLayer`: recomputing it would update the BatchNorm running
    statistics twice per step, so gradient checkpointing would change what training computes.
    """

    def __init__(self, config: SparseViTConfig, width: int, drop_path_rate: float):
        super().__init__()
        self.position_conv = nn.Conv2d(width, width, kernel_size=3, padding=1, groups=width)
        self.norm1 = nn.BatchNorm2d(width)
        self.conv1 = nn.Conv2d(width, width, kernel_size=1)
        self.spatial_conv = nn.Conv2d(width, width, kernel_size=5, padding=2, groups=width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=1)
        self.norm2 = nn.BatchNorm2d(width)
        self.mlp = SparseViTConvMlp(config, width)
        self.drop_path = SparseViTDropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.position_conv(hidden_states)
        local = self.conv2(self.spatial_conv(self.conv1(self.norm1(hidden_states))))
        hidden_states = hidden_states + self.drop_path(local)
        hidden_states = hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))
        return hidden_states


class SparseViTSparseSelfAttention(nn.Module):
    """Multi-head self-attention restricted to the S x S interleaved groups of the token grid."""

    def __init__(self, config: SparseViTConfig, width: int, sparsity_rate: int, group_side: int | None = None):
        super().__init__()
        self.config = config
        self.sparsity_rate = sparsity_rate
        self.group_side = group_side  # set by `config.official_grouping_size`: the rate then follows the grid
        self.head_dim = config.attention_head_size
        self.num_heads = width // self.head_dim
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = False
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, height, width, channels = hidden_states.shape
        if self.group_side is None:
            # A rate above the grid side gives one row (column) per group, which is what rate = side gives.
            rate_h, rate_w = min(self.sparsity_rate, height), min(self.sparsity_rate, width)
        else:
            # The official grouping: groups keep their side at any input size, so the rate scales with the grid.
            rate_h, rate_w = max(1, height // self.group_side), max(1, width // self.group_side)
        pad_h, pad_w = -height % rate_h, -width % rate_w
        if pad_h or pad_w:
            hidden_states = F.pad(hidden_states, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = height + pad_h, width + pad_w

        groups = group_tokens(hidden_states, rate_h, rate_w)  # (batch * G, N, C)
        num_groups, group_size = groups.shape[0], groups.shape[1]
        qkv = self.qkv(groups).view(num_groups, group_size, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch * G, heads, N, head_dim)

        attention_mask = None
        if pad_h or pad_w:
            attention_mask = self._padding_mask(batch, height, width, padded_h, padded_w, rate_h, rate_w, query)

        implementation = "eager" if output_attentions else self.config._attn_implementation
        if implementation == "eager":
            # Eager attention runs on (batch, G, heads, N, head_dim), so that the probabilities it returns (and the
            # output records) are the very tensor the output is computed from, in their documented shape.
            query, key, value = (t.view(batch, rate_h * rate_w, *t.shape[1:]) for t in (query, key, value))
            if attention_mask is not None:
                attention_mask = attention_mask.view(batch, rate_h * rate_w, *attention_mask.shape[1:])
        attention_interface: Callable = ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        attn_output = self.proj(attn_output.reshape(num_groups, group_size, channels))
        attn_output = ungroup_tokens(attn_output, batch, padded_h, padded_w, rate_h, rate_w)
        if pad_h or pad_w:
            attn_output = attn_output[:, :height, :width]
        if attn_weights is not None and attn_weights.ndim == 4:  # another implementation returning (batch * G, ...)
            attn_weights = attn_weights.view(batch, rate_h * rate_w, self.num_heads, group_size, group_size)
        return attn_output, attn_weights

    @staticmethod
    def _padding_mask(batch, height, width, padded_h, padded_w, rate_h, rate_w, query) -> torch.Tensor:
        """Additive mask (batch * G, 1, 1, N) that hides the grid padding from every query of its group."""
        valid = torch.zeros(1, padded_h, padded_w, 1, dtype=torch.bool, device=query.device)
        valid[:, :height, :width] = True
        valid = group_tokens(valid, rate_h, rate_w)[..., 0]  # (G, N)
        mask = torch.zeros(valid.shape, dtype=query.dtype, device=query.device)
        mask = mask.masked_fill(~valid, torch.finfo(query.dtype).min)
        return mask[:, None, None, :].repeat(batch, 1, 1, 1)


class SparseViTMixMlp(nn.Module):
    """Linear -> depthwise 3x3 conv on the token grid -> activation -> Linear."""

    def __init__(self, config: SparseViTConfig, width: int):
        super().__init__()
        hidden = int(width * config.mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.depthwise_conv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.fc1(hidden_states)  # (batch, H, W, hidden)
        hidden_states = self.depthwise_conv(hidden_states.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.activation(hidden_states))


class SparseViTAttentionBlock(GradientCheckpointingLayer):
    """Pre-norm transformer block with sparse self-attention and layer scale."""

    def __init__(
        self,
        config: SparseViTConfig,
        width: int,
        sparsity_rate: int,
        drop_path_rate: float,
        group_side: int | None = None,
    ):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.attention = SparseViTSparseSelfAttention(config, width, sparsity_rate, group_side)
        self.layer_scale_1 = nn.Parameter(torch.full((width,), config.layer_scale_init_value))
        self.layernorm_after = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = SparseViTMixMlp(config, width)
        self.layer_scale_2 = nn.Parameter(torch.full((width,), config.layer_scale_init_value))
        self.drop_path = SparseViTDropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False) -> torch.Tensor:
        tokens = hidden_states.permute(0, 2, 3, 1)  # (batch, H, W, C)
        attn_output, _ = self.attention(self.layernorm_before(tokens), output_attentions)
        tokens = tokens + self.drop_path(self.layer_scale_1 * attn_output)
        tokens = tokens + self.drop_path(self.layer_scale_2 * self.mlp(self.layernorm_after(tokens)))
        return tokens.permute(0, 3, 1, 2)


class SparseViTStage(nn.Module):
    def __init__(self, config: SparseViTConfig, stage: int, drop_path_rates: list[float]):
        super().__init__()
        in_channels = config.num_channels if stage == 0 else config.hidden_sizes[stage - 1]
        width = config.hidden_sizes[stage]
        self.patch_embeddings = SparseViTPatchEmbeddings(config, in_channels, width, config.patch_sizes[stage])
        if stage < 2:
            self.blocks = nn.ModuleList(SparseViTConvBlock(config, width, rate) for rate in drop_path_rates)
            self.fused_blocks = ()
            self.layernorm = None
        else:
            rates = config.sparsity_rates[stage - 2]
            self.blocks = nn.ModuleList(
                SparseViTAttentionBlock(config, width, sparsity, rate, config.official_group_side(stage, sparsity))
                for sparsity, rate in zip(rates, drop_path_rates)
            )
            self.fused_blocks = tuple(config.fused_blocks[stage - 2])
            self.layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden_states = self.patch_embeddings(hidden_states)
        fused = []
        for index, block in enumerate(self.blocks):
            if self.layernorm is None:
                hidden_states = block(hidden_states)
            else:
                hidden_states = block(hidden_states, output_attentions)
            if index in self.fused_blocks:
                fused.append(hidden_states)
        if self.layernorm is not None:
            # The final LayerNorm only feeds the fusion head (and the model output); the next stage reads the raw map.
            fused[-1] = self.layernorm(hidden_states.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return hidden_states, fused


class SparseViTPreTrainedModel(PreTrainedModel):
    config: SparseViTConfig
    base_model_prefix = "sparsevit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SparseViTConvBlock", "SparseViTAttentionBlock"]
    # Parameters (by their own name, the last part of the dotted one) that training keeps free of weight decay, as
    # the official recipe does, besides biases and normalisation weights: the per-channel layer scales and the
    # (maps, channels) fusion weights, which are scales, not projections.
    _no_weight_decay_parameters = ("layer_scale_1", "layer_scale_2", "fusion_weights")
    _supports_sdpa = True
    _can_compile_fullgraph = True
    _can_record_outputs = {
        "hidden_states": [
            OutputRecorder(SparseViTConvBlock, capture_initial_hidden_state=True),
            OutputRecorder(SparseViTAttentionBlock, capture_initial_hidden_state=False),
        ],
        "attentions": SparseViTSparseSelfAttention,
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, SparseViTAttentionBlock):
            init.constant_(module.layer_scale_1, self.config.layer_scale_init_value)
            init.constant_(module.layer_scale_2, self.config.layer_scale_init_value)
        elif isinstance(module, SparseViTFusionHead):
            init.constant_(module.fusion_weights, self.config.layer_scale_init_value)


class SparseViTModel(SparseViTPreTrainedModel):
    def __init__(self, config: SparseViTConfig):
        super().__init__(config)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        starts = [sum(config.depths[:stage]) for stage in range(4)]
        self.stages = nn.ModuleList(
            SparseViTStage(config, stage, rates[starts[stage] : starts[stage] + config.depths[stage]])
            for stage in range(4)
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        # As in transformers' vision models: the patch embedding plays the part of the input embeddings (PEFT's
        # `enable_input_require_grads` hooks it so that gradient checkpointing works with frozen weights).
        return self.stages[0].patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> SparseViTModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Normalised images of at least 32 x 32 pixels, any aspect ratio; see `SparseViTImageProcessor`.
        """
        check_pixel_values(pixel_values, self.config)
        output_attentions = bool(kwargs.get("output_attentions", self.config.output_attentions))
        divisor = self.config.pad_size_divisor
        height, width = pixel_values.shape[-2:]
        pad_h, pad_w = -height % divisor, -width % divisor
        hidden_states = F.pad(pixel_values, (0, pad_w, 0, pad_h)) if pad_h or pad_w else pixel_values

        feature_maps = []
        for stage in self.stages:
            hidden_states, fused = stage(hidden_states, output_attentions)
            feature_maps.extend(fused)
        return SparseViTModelOutput(last_hidden_state=feature_maps[-1], feature_maps=tuple(feature_maps))


class SparseViTFusionHead(nn.Module):
    """Learnable Feature Fusion: sum_k gamma_k * project_k(map_k) at the stage-3 resolution, LayerNorm, classifier.

    The official 1x1 convolutions are applied as Linear layers on channels-last maps, which is the same arithmetic.
    """

    def __init__(self, config: SparseViTConfig):
        super().__init__()
        widths = [config.hidden_sizes[2]] * len(config.fused_blocks[0]) + [config.hidden_sizes[3]] * len(
            config.fused_blocks[1]
        )
        fusion = config.fusion_hidden_size
        self.projections = nn.ModuleList(
            nn.Linear(width, fusion) if width != fusion else nn.Identity() for width in widths
        )
        self.fusion_weights = nn.Parameter(torch.full((len(widths), fusion), config.layer_scale_init_value))
        self.layernorm = nn.LayerNorm(fusion, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(fusion, 1)

    def forward(self, feature_maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        size = feature_maps[0].shape[-2:]  # the stage-3 grid, 1/16 of the (padded) input
        fused = None
        for projection, weight, feature_map in zip(self.projections, self.fusion_weights, feature_maps):
            feature_map = projection(feature_map.permute(0, 2, 3, 1))  # (batch, h, w, fusion)
            if feature_map.shape[1:3] != size:
                feature_map = F.interpolate(
                    feature_map.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False
                ).permute(0, 2, 3, 1)
            term = weight * feature_map
            fused = term if fused is None else fused + term
        logits = self.classifier(self.layernorm(fused))  # (batch, h, w, 1)
        return logits.permute(0, 3, 1, 2)


class SparseViTForManipulationLocalization(SparseViTPreTrainedModel):
    def __init__(self, config: SparseViTConfig):
        super().__init__(config)
        self.sparsevit = SparseViTModel(config)
        self.fusion_head = SparseViTFusionHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]
    ) -> SemanticSegmenterOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Normalised images of at least 32 x 32 pixels.
        labels (`torch.Tensor` of shape `(batch_size, height, width)` or `(batch_size, 1, height, width)`, *optional*):
            Ground-truth masks with values 0 (authentic) and 1 (manipulated), float, integer or bool. The loss is
            the binary cross-entropy of the logits upsampled bilinearly to the label size, plus
            `config.dice_loss_weight` times the soft Dice loss of their probabilities over the batch.

        Returns `logits` of shape `(batch_size, 1, ceil(height / 16), ceil(width / 16))`; upsampled bilinearly
        (align_corners=False) to the input size they are the official pre-sigmoid output.
        """
        outputs = self.sparsevit(pixel_values, **kwargs)
        logits = self.fusion_head(outputs.feature_maps)
        stride = self.config.fusion_stride
        height, width = pixel_values.shape[-2:]
        logits = logits[..., : -(-height // stride), : -(-width // stride)]

        loss = None
        if labels is not None:
            labels = check_labels(labels, pixel_values)
            upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.binary_cross_entropy_with_logits(upsampled[:, 0].float(), labels)
            if self.config.dice_loss_weight:
                probabilities = upsampled[:, 0].float().sigmoid()
                dice = (2.0 * (probabilities * labels).sum() + 1.0) / (probabilities.sum() + labels.sum() + 1.0)
                loss = loss + self.config.dice_loss_weight * (1.0 - dice)

        return SemanticSegmenterOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "SparseViTForManipulationLocalization",
    "SparseViTModel",
    "SparseViTModelOutput",
    "SparseViTPreTrainedModel",
]
