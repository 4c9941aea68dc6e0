"""SparseViT's attention functions and the interleaved token groups of sparse attention.

Part of the model's remote code: `modeling_sparsevit.py` imports it, and `save_pretrained` copies it next to the
weights. `ATTENTION_FUNCTIONS` is the model's own view of transformers' `AttentionInterface`: `eager` is
`eager_attention_forward`, `sdpa` picks torch's fused kernel or `blocked_attention_forward` per call (shape, dtype,
device; see `prefers_blocked_attention`), and any other registered implementation is transformers'.
"""

from functools import cache

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import AttentionInterface


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over the last two dimensions; any leading dimensions (batch, groups, heads) are batch dimensions.

    The scale goes on the queries (N x head_dim values) rather than on the scores (N x N), and the softmax runs in the
    input dtype: torch's bf16/fp16 softmax kernels accumulate in fp32 already, so an fp32 copy of the scores would
    only add two passes over the largest tensor of the block.
    """
    attn_weights = torch.matmul(query * scaling, key.transpose(-2, -1))
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(-3, -2).contiguous()
    return attn_output, attn_weights


def blocked_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    max_scores: int = 2**20,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Inference attention as two matrix products per block of queries, holding at most `max_scores` scores at once.

    Takes (batch, heads, N, head_dim) and returns (batch, N, heads, head_dim), as transformers' SDPA function. The
    scores of a block (2 MiB in bf16 by default) stay in the CPU's cache between the products and the softmax,
    where the full (batch, heads, N, N) scores of eager attention would not, and no more memory is needed than for
    SDPA's fused kernel. Autograd cannot record the products written into the output, so this is for inference.
    """
    batch, heads, queries, head_dim = query.shape
    keys = key.shape[-2]
    query = (query * scaling).reshape(batch * heads, queries, head_dim)  # (batch * heads, N, head_dim)
    key_t = key.reshape(batch * heads, keys, head_dim).transpose(1, 2)  # (batch * heads, head_dim, N)
    value = value.reshape(batch * heads, keys, head_dim)
    if attention_mask is not None:  # (batch, 1 or heads, 1 or N, N) -> one row per (batch, head)
        attention_mask = attention_mask.expand(batch, heads, -1, keys).reshape(batch * heads, -1, keys)
    output = torch.empty_like(query)
    if queries * keys <= max_scores:  # whole groups at a time
        step_batch, step_queries = max(1, max_scores // (queries * keys)), queries
    else:  # one group and head at a time, in blocks of queries
        step_batch, step_queries = 1, max(1, max_scores // keys)
    for b in range(0, batch * heads, step_batch):
        for q in range(0, queries, step_queries):
            rows = (slice(b, b + step_batch), slice(q, q + step_queries))
            scores = torch.bmm(query[rows], key_t[b : b + step_batch])
            if attention_mask is not None:
                mask = attention_mask[b : b + step_batch]
                scores = scores + (mask if mask.shape[1] == 1 else mask[:, q : q + step_queries])
            probabilities = nn.functional.dropout(scores.softmax(-1), p=dropout, training=module.training)
            torch.bmm(probabilities, value[b : b + step_batch], out=output[rows])
    return output.view(batch, heads, queries, head_dim).transpose(1, 2).contiguous(), None


@cache
def cpu_has_fast_matmul(dtype: torch.dtype) -> bool:
    """Whether this CPU runs matrix products in `dtype` on native kernels: always in fp32; in bf16 with oneDNN's
    AVX-512 or AMX kernels, in fp16 with its AVX512-FP16 or AMX-FP16 kernels.

    Without them torch falls back to a scalar product: on an AVX2 CPU (Zen 3, one thread) a 1024^3 product ran at
    1.3 GFLOP/s in bf16 and fp16 against 56 in fp32, and the whole model at 256 x 256 took 9-11x its fp32 time.
    """
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    if check is None:
        return True
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN has no such kernels (nor the check)
        return False


def prefers_blocked_attention(query: torch.Tensor, key: torch.Tensor) -> bool:
    """The dispatch rule of SparseViT's `sdpa` attention: whether `blocked_attention_forward` is faster than torch's
    fused kernel for this call (measured per block shape with `benchmarks/attention_kernels.py`).

    On a CPU, torch's fused attention computes in fp32 whatever the input dtype, so in bf16 it runs at the fp32
    matrix-product rate, while the blocked products run at the bf16 rate: 1.3-2.5x faster at every shape SparseViT
    attends in where the CPU has native bf16 products (`cpu_has_fast_matmul`), 15-24x slower where it does not. In
    fp32 the fused kernel wins from 256 tokens per group up and the blocked products win on the short sequences of the
    sparsest blocks (64 tokens or fewer). fp16 keeps the fused kernel: its blocked products were 3.6x slower at 64
    tokens on an AVX2 CPU. On accelerators, under `torch.compile` or export, and when autograd needs the graph,
    torch's kernel is used.
    """
    if query.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
        return False
    if query.dtype == torch.bfloat16:
        return cpu_has_fast_matmul(torch.bfloat16)
    return query.dtype == torch.float32 and key.shape[-2] <= 64


def sparsevit_sdpa_attention_forward(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """SparseViT's `sdpa` implementation: torch's fused kernel, or the blocked products where those are faster."""
    forward = blocked_attention_forward if prefers_blocked_attention(query, key) else sdpa_attention_forward
    return forward(module, query, key, value, attention_mask, **kwargs)


# SparseViT's own view of transformers' attention functions (the way transformers lets a model override one locally):
# `sdpa` dispatches per call, every other implementation is transformers'.
ATTENTION_FUNCTIONS = AttentionInterface()
ATTENTION_FUNCTIONS["sdpa"] = sparsevit_sdpa_attention_forward


def group_tokens(tokens: torch.Tensor, rate_h: int, rate_w: int) -> torch.Tensor:
    """(batch, H, W, C) with H, W multiples of the rates -> (batch * rate_h * rate_w, H / rate_h * W / rate_w, C).

    Group (a, b) holds the tokens (i, j) with i = a (mod rate_h) and j = b (mod rate_w).
    """
    batch, height, width, channels = tokens.shape
    tokens = tokens.view(batch, height // rate_h, rate_h, width // rate_w, rate_w, channels)
    return tokens.permute(0, 2, 4, 1, 3, 5).reshape(batch * rate_h * rate_w, -1, channels)


def ungroup_tokens(groups: torch.Tensor, batch: int, height: int, width: int, rate_h: int, rate_w: int) -> torch.Tensor:
    """Inverse of `group_tokens`: -> (batch, H, W, C)."""
    channels = groups.shape[-1]
    groups = groups.view(batch, rate_h, rate_w, height // rate_h, width // rate_w, channels)
    return groups.permute(0, 3, 1, 4, 2, 5).reshape(batch, height, width, channels)
