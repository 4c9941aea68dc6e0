"""An independent, deliberately plain SparseViT forward written from SPARSEVIT_NOTES.md, on the official tensor names.

It shares no code with the package: groups are taken by strided slicing (`x[:, a::S, b::S]`, the tokens S apart),
so it also covers token grids that are not multiples of S, where the package pads and masks instead.

`official_group_sides` gives the official code's grouping rule: it stores a group side L per block, computed for a
512 x 512 input (32 // S in stage 3, 16 // S in stage 4), and at run time cuts an n x n grid into blocks of side
n // L, grouping the tokens at the same position in every block, i.e. the tokens n // L apart. The reference
applies that rate per axis (at least 1) when `group_sides` are passed.
"""

import torch
from torch.nn import functional as F


def official_shapes(widths, depths, head_fused_counts, mlp_ratio=4, fusion=512):
    """Tensor names and shapes of the official `SparseViT_Mul` for a given layout (the published one by default)."""
    shapes = {}
    in_channels = [3] + list(widths[:3])
    patches = [4, 2, 2, 2]
    for stage in range(4):
        c, p = widths[stage], patches[stage]
        shapes[f"encoder_net.patch_embed{stage + 1}.norm.weight"] = (c,)
        shapes[f"encoder_net.patch_embed{stage + 1}.norm.bias"] = (c,)
        shapes[f"encoder_net.patch_embed{stage + 1}.proj.weight"] = (c, in_channels[stage], p, p)
        shapes[f"encoder_net.patch_embed{stage + 1}.proj.bias"] = (c,)
    for stage in (0, 1):
        c, h = widths[stage], widths[stage] * mlp_ratio
        for i in range(depths[stage]):
            b = f"encoder_net.blocks{stage + 1}.{i}"
            shapes |= {f"{b}.pos_embed.weight": (c, 1, 3, 3), f"{b}.pos_embed.bias": (c,)}
            for norm in ("norm1", "norm2"):
                shapes |= {f"{b}.{norm}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
                shapes[f"{b}.{norm}.num_batches_tracked"] = ()
            shapes |= {f"{b}.conv1.weight": (c, c, 1, 1), f"{b}.conv1.bias": (c,)}
            shapes |= {f"{b}.conv2.weight": (c, c, 1, 1), f"{b}.conv2.bias": (c,)}
            shapes |= {f"{b}.attn.weight": (c, 1, 5, 5), f"{b}.attn.bias": (c,)}
            shapes |= {f"{b}.mlp.fc1.weight": (h, c, 1, 1), f"{b}.mlp.fc1.bias": (h,)}
            shapes |= {f"{b}.mlp.fc2.weight": (c, h, 1, 1), f"{b}.mlp.fc2.bias": (c,)}
        shapes |= {f"encoder_net.norm{stage + 1}.weight": (c,), f"encoder_net.norm{stage + 1}.bias": (c,)}
    for stage in (2, 3):
        c, h = widths[stage], widths[stage] * mlp_ratio
        for i in range(depths[stage]):
            b = f"encoder_net.blocks{stage + 1}.{i}"
            shapes |= {f"{b}.gamma_1": (c,), f"{b}.gamma_2": (c,)}
            shapes |= {f"{b}.pos_embed.weight": (c, 1, 3, 3), f"{b}.pos_embed.bias": (c,)}
            shapes |= {f"{b}.norm1.weight": (c,), f"{b}.norm1.bias": (c,)}
            shapes |= {f"{b}.attn.qkv.weight": (3 * c, c), f"{b}.attn.qkv.bias": (3 * c,)}
            shapes |= {f"{b}.attn.proj.weight": (c, c), f"{b}.attn.proj.bias": (c,)}
            shapes |= {f"{b}.norm2.weight": (c,), f"{b}.norm2.bias": (c,)}
            shapes |= {f"{b}.mlp.fc1.weight": (h, c), f"{b}.mlp.fc1.bias": (h,)}
            shapes |= {f"{b}.mlp.dwconv.dwconv.weight": (h, 1, 3, 3), f"{b}.mlp.dwconv.dwconv.bias": (h,)}
            shapes |= {f"{b}.mlp.fc2.weight": (c, h), f"{b}.mlp.fc2.bias": (c,)}
        shapes |= {f"encoder_net.norm{stage + 1}.weight": (c,), f"encoder_net.norm{stage + 1}.bias": (c,)}
    n3, n4 = head_fused_counts
    for k in range(n3 + n4):
        shapes[f"lmu.gamma{k + 1}"] = (fusion,)
    shapes |= {"lmu.norm.weight": (fusion,), "lmu.norm.bias": (fusion,)}
    for k in range(n3):
        shapes[f"lmu.conv_layer{k + 1}.weight"] = (fusion, widths[2], 1, 1)
        shapes[f"lmu.conv_layer{k + 1}.bias"] = (fusion,)
    shapes |= {"lmu.conv_last.weight": (1, fusion, 1, 1), "lmu.conv_last.bias": (1,)}
    return shapes


def random_official_state_dict(shapes, seed=0):
    """Every tensor random, layer scales and BatchNorm statistics included, at scales that keep activations O(1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 1 and (name.endswith("weight") or "gamma" in name):
            base = 0.0 if "gamma" in name else 1.0
            state[name] = base + 0.3 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:
            state[name] = 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            state[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


def _layer_norm(x_nhwc, sd, prefix, eps):
    return F.layer_norm(x_nhwc, x_nhwc.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def _batch_norm(x, sd, prefix):
    return F.batch_norm(
        x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"],
        training=False, eps=1e-5,
    )


def _conv(x, sd, prefix, **kwargs):
    return F.conv2d(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], **kwargs)


def _patch_embed(x, sd, stage, stride):
    x = _conv(x, sd, f"encoder_net.patch_embed{stage}.proj", stride=stride)
    return _layer_norm(x.permute(0, 2, 3, 1), sd, f"encoder_net.patch_embed{stage}.norm", 1e-5).permute(0, 3, 1, 2)


def _conv_block(x, sd, b):
    c = x.shape[1]
    x = x + _conv(x, sd, f"{b}.pos_embed", padding=1, groups=c)
    y = _conv(_batch_norm(x, sd, f"{b}.norm1"), sd, f"{b}.conv1")
    y = _conv(_conv(y, sd, f"{b}.attn", padding=2, groups=c), sd, f"{b}.conv2")
    x = x + y
    y = _conv(F.gelu(_conv(_batch_norm(x, sd, f"{b}.norm2"), sd, f"{b}.mlp.fc1")), sd, f"{b}.mlp.fc2")
    return x + y


def official_group_sides(sparsity_rates, size=512):
    """Group side per attention block, as the official code computes it for a square input of `size` pixels."""
    stage3, stage4 = sparsity_rates
    return [[max(1, (size // 16) // s) for s in stage3], [max(1, (size // 32) // s) for s in stage4]]


def _attention_block(x, sd, b, rate, head_dim, group_side=None):
    t = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    batch, height, width, c = t.shape
    heads = c // head_dim
    if group_side is None:
        rate_h = rate_w = rate
    else:
        rate_h, rate_w = max(1, height // group_side), max(1, width // group_side)
    n = _layer_norm(t, sd, f"{b}.norm1", 1e-6)
    out = torch.zeros_like(n)
    for a in range(rate_h):
        for bb in range(rate_w):
            group = n[:, a::rate_h, bb::rate_w]
            if group.numel() == 0:
                continue
            gh, gw = group.shape[1:3]
            tokens = group.reshape(batch, gh * gw, c)
            qkv = F.linear(tokens, sd[f"{b}.attn.qkv.weight"], sd[f"{b}.attn.qkv.bias"])
            q, k, v = qkv.reshape(batch, -1, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            weights = torch.softmax(q @ k.transpose(-1, -2) * head_dim**-0.5, dim=-1)
            y = (weights @ v).transpose(1, 2).reshape(batch, -1, c)
            y = F.linear(y, sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"])
            out[:, a::rate_h, bb::rate_w] = y.reshape(batch, gh, gw, c)
    t = t + sd[f"{b}.gamma_1"] * out
    m = F.linear(_layer_norm(t, sd, f"{b}.norm2", 1e-6), sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"])
    m = _conv(m.permute(0, 3, 1, 2), sd, f"{b}.mlp.dwconv.dwconv", padding=1, groups=m.shape[-1])
    m = F.linear(F.gelu(m.permute(0, 2, 3, 1)), sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"])
    t = t + sd[f"{b}.gamma_2"] * m
    return t.permute(0, 3, 1, 2)


@torch.no_grad()
def reference_logits(sd, pixel_values, depths, sparsity_rates, fused_blocks, head_dim=64, group_sides=None):
    """Pre-sigmoid logits at 1/16 resolution of the (already padded) input, as the notes describe; with
    `group_sides` (from `official_group_sides`), grouped by the official code's rule instead of the rates."""
    x = _patch_embed(pixel_values, sd, 1, 4)
    for i in range(depths[0]):
        x = _conv_block(x, sd, f"encoder_net.blocks1.{i}")
    x = _patch_embed(x, sd, 2, 2)
    for i in range(depths[1]):
        x = _conv_block(x, sd, f"encoder_net.blocks2.{i}")
    maps = []
    for stage in (3, 4):
        x = _patch_embed(x, sd, stage, 2)
        for i in range(depths[stage - 1]):
            side = None if group_sides is None else group_sides[stage - 3][i]
            x = _attention_block(x, sd, f"encoder_net.blocks{stage}.{i}", sparsity_rates[stage - 3][i], head_dim, side)
            if i in fused_blocks[stage - 3]:
                maps.append(x)
        maps[-1] = _layer_norm(x.permute(0, 2, 3, 1), sd, f"encoder_net.norm{stage}", 1e-6).permute(0, 3, 1, 2)
    n3 = len(fused_blocks[0])
    size = maps[0].shape[-2:]
    fused = 0
    for k, feature in enumerate(maps):
        if k < n3:
            feature = _conv(feature, sd, f"lmu.conv_layer{k + 1}")
        else:
            feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        fused = fused + sd[f"lmu.gamma{k + 1}"][:, None, None] * feature
    fused = _layer_norm(fused.permute(0, 2, 3, 1), sd, "lmu.norm", 1e-6).permute(0, 3, 1, 2)
    return _conv(fused, sd, "lmu.conv_last")
