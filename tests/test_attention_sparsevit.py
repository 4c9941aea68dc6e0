"""SparseViT's attention functions: the blocked matrix-product attention computes what eager attention computes, in
bounded memory, and the `sdpa` implementation picks it exactly where the dispatch rule says it is faster."""

import pytest
import torch
from torch import nn

from sparsevit_hf import SparseViTForManipulationLocalization, attention_sparsevit
from sparsevit_hf.attention_sparsevit import (
    ATTENTION_FUNCTIONS,
    blocked_attention_forward,
    eager_attention_forward,
    prefers_blocked_attention,
)


def strided_qkv(groups, heads, tokens, head_dim=16, dtype=torch.float32, seed=0):
    """Query, key and value as the model makes them: strided views of one (groups, N, 3, heads, head_dim) tensor."""
    qkv = torch.randn(groups, tokens, 3, heads, head_dim, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def padding_mask(groups, tokens, valid):
    mask = torch.zeros(groups, 1, 1, tokens)
    mask[..., valid:] = torch.finfo(torch.float32).min
    return mask


def module():
    """What the attention functions read from SparseViT's attention module: eval mode, not causal."""
    attention = nn.Module().eval()
    attention.is_causal = False
    return attention


@pytest.mark.parametrize("max_scores", [2**20, 700, 50])  # whole groups per product, a few groups, query blocks
@pytest.mark.parametrize("masked", [False, True])
def test_blocked_attention_equals_eager_attention_for_any_block_size(max_scores, masked):
    query, key, value = strided_qkv(groups=6, heads=2, tokens=23)
    mask = padding_mask(6, 23, valid=17) if masked else None
    expected, _ = eager_attention_forward(module(), query, key, value, mask, scaling=0.25)
    output, weights = blocked_attention_forward(module(), query, key, value, mask, scaling=0.25, max_scores=max_scores)
    assert weights is None and output.shape == (6, 23, 2, 16) and output.is_contiguous()
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=1e-5)


def test_blocked_attention_never_holds_more_scores_than_its_budget(monkeypatch):
    query, key, value = strided_qkv(groups=4, heads=2, tokens=40)
    largest = []
    bmm = torch.bmm

    def recording_bmm(a, b, **kwargs):
        result = bmm(a, b, **kwargs)
        if b.shape[-1] == 40:  # the scores product (queries x keys)
            largest.append(result.numel())
        return result

    monkeypatch.setattr(torch, "bmm", recording_bmm)
    blocked_attention_forward(module(), query, key, value, None, scaling=0.25, max_scores=400)
    assert largest and max(largest) <= 400 and len(largest) == 4 * 2 * 4  # 10 of 40 queries at a time


@pytest.mark.parametrize(
    "dtype, tokens, device, native_bf16, expected",
    [
        (torch.bfloat16, 16, "cpu", True, True),  # bf16 on a CPU with native bf16 products: blocked at every shape
        (torch.bfloat16, 4096, "cpu", True, True),
        (torch.bfloat16, 16, "cpu", False, False),  # ... without them (AVX2): torch's kernel, which computes in fp32
        (torch.bfloat16, 4096, "cpu", False, False),
        (torch.float32, 64, "cpu", False, True),  # fp32: blocked for the short sequences of the sparsest blocks
        (torch.float32, 256, "cpu", True, False),  # ... and torch's fused kernel from 256 tokens up
        (torch.float16, 64, "cpu", True, False),  # fp16: always torch's kernel
        (torch.bfloat16, 1024, "meta", True, False),  # never off the CPU
    ],
)
def test_the_dispatch_rule_follows_dtype_sequence_length_device_and_the_cpus_bf16_support(
    monkeypatch, dtype, tokens, device, native_bf16, expected
):
    native = lambda dtype: dtype != torch.bfloat16 or native_bf16  # noqa: E731
    monkeypatch.setattr(attention_sparsevit, "cpu_has_fast_matmul", native)
    query = torch.empty(1, 2, tokens, 16, dtype=dtype, device=device)
    with torch.no_grad():
        assert prefers_blocked_attention(query, query) is expected


def test_training_keeps_torchs_kernel_so_that_autograd_records_the_attention():
    query = torch.randn(1, 2, 16, 16, requires_grad=True)
    assert not prefers_blocked_attention(query, query)
    with torch.no_grad():
        assert prefers_blocked_attention(query, query)


def test_sdpa_dispatches_and_other_implementations_are_transformers_own():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert ATTENTION_FUNCTIONS["sdpa"] is not ALL_ATTENTION_FUNCTIONS["sdpa"]
    assert ATTENTION_FUNCTIONS["flex_attention"] is ALL_ATTENTION_FUNCTIONS["flex_attention"]
    query, key, value = strided_qkv(groups=2, heads=2, tokens=20)
    expected = ALL_ATTENTION_FUNCTIONS["sdpa"](module(), query, key, value, None, scaling=0.25)[0]
    with torch.no_grad():
        output, _ = ATTENTION_FUNCTIONS["sdpa"](module(), query, key, value, None, scaling=0.25)
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=1e-5)


def test_bf16_model_with_sdpa_gives_the_masks_of_eager_attention(tiny_config):
    tiny_config.layer_scale_init_value = 0.5  # make attention matter
    pixel_values = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(4))
    logits = {}
    for implementation in ("eager", "sdpa"):
        tiny_config._attn_implementation = implementation
        torch.manual_seed(0)
        model = SparseViTForManipulationLocalization(tiny_config).eval().to(torch.bfloat16)
        with torch.no_grad():
            logits[implementation] = model(pixel_values.to(torch.bfloat16)).logits.float()
    assert logits["eager"].std() > 0.1
    assert ((logits["eager"] > 0) == (logits["sdpa"] > 0)).float().mean() > 0.99
    torch.testing.assert_close(logits["sdpa"], logits["eager"], atol=0.05 * logits["eager"].abs().max(), rtol=0)
