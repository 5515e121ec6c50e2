"""`reasoner.attention`: the fp32 attention of models trained on the CPU, and the attention of packed rows."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from reasoner.attention import SDPA_FP32, SDPA_PACKED, Segments, attention_for, sdpa_fp32, segment_attention
from reasoner.models import load_policy


class _Attention(torch.nn.Module):
    """What transformers' SDPA attention reads of a layer: grouped KV heads, causal."""

    num_key_value_groups = 2
    is_causal = True


def _qkv(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 7, 16, generator=g)  # (B, H, L, D)
    k, v = torch.randn(2, 2, 7, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g)  # (B, H_kv, L, D)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def test_bf16_inputs_are_attended_in_fp32_under_autocast():
    q, k, v = _qkv(torch.bfloat16)
    module = _Attention()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, weights = sdpa_fp32(module, q, k, v, None, scaling=0.25)
        bf16, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.25)
    fp32, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), None, scaling=0.25)
    assert weights is None and out.dtype == torch.bfloat16 and out.shape == (2, 7, 4, 16)
    assert torch.equal(out, fp32.to(torch.bfloat16))
    assert not torch.equal(bf16, out)  # the bf16 kernel rounds differently: the upcast is what runs


def test_fp32_inputs_give_sdpa_exactly_with_its_gradient():
    q, k, v = (t.requires_grad_() for t in _qkv(torch.float32))
    out, _ = sdpa_fp32(_Attention(), q, k, v, None)
    out.square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ref, _ = sdpa_attention_forward(_Attention(), q, k, v, None)
    ref.square().sum().backward()
    assert torch.equal(out, ref)
    assert all(torch.equal(a, t.grad) for a, t in zip(grads, (q, k, v)))


def test_a_policy_trained_on_the_cpu_uses_it(tiny_model_dir):
    assert attention_for(torch.device("cuda")) == SDPA_PACKED
    model = load_policy(str(tiny_model_dir), "cpu")
    assert model.config._attn_implementation == SDPA_FP32
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        model.set_attn_implementation("sdpa")
        assert torch.allclose(ours, model(input_ids=ids).logits, atol=1e-5)  # fp32: the same attention


@pytest.mark.parametrize("repeat_heads", [False, True])  # the CPU's way, a GPU's
def test_segment_attention_is_sdpa_over_the_rows_visibility_with_grouped_kv_heads(repeat_heads):
    """Two segments of a 5-token row: a prompt (0, 1) attended causally, and a completion (2..4)
    seeing the prompt and itself causally; padded to 3 queries and 5 keys. The same as SDPA over
    the whole row with that visibility as a (T, T) mask, values and gradients."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, 5, 8, generator=g, requires_grad=True)
    k, v = (torch.randn(1, 2, 5, 8, generator=g, requires_grad=True) for _ in range(2))
    a, j = torch.arange(3)[:, None], torch.arange(5)[None, :]
    mask = torch.stack([((j <= a) & (j < 2)) | ((a >= 2) & (j == 0)), (j < 2) | ((j - 2 <= a) & (j < 5))])[:, None]
    segments = Segments(
        query_index=torch.tensor([[0, 1, 0], [2, 3, 4]]),
        key_index=torch.tensor([[0, 1, 0, 0, 0], [0, 1, 2, 3, 4]]),
        mask=mask,
        rows=torch.tensor([0, 1, 3, 4, 5]),
    )
    out = segment_attention(q, k, v, segments, 0.3, repeat_heads)
    out.square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    t = torch.arange(5)
    visible = (t[:, None] >= t[None, :]) & ~((t[:, None] < 2) & (t[None, :] >= 2))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=visible, scale=0.3
    ).transpose(1, 2)
    ref.square().sum().backward()
    assert out.shape == (1, 5, 4, 8)
    assert torch.allclose(out, ref, atol=1e-6)
    assert all(torch.allclose(a, t.grad, atol=1e-6) for a, t in zip(grads, (q, k, v)))
