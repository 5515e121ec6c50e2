"""`reasoner.attention`: the fp32 attention of models trained on the CPU."""

from __future__ import annotations

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from reasoner.attention import SDPA_FP32, attention_for, sdpa_fp32
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
    assert attention_for(torch.device("cuda")) == "sdpa"
    model = load_policy(str(tiny_model_dir), "cpu")
    assert model.config._attn_implementation == SDPA_FP32
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        model.set_attn_implementation("sdpa")
        assert torch.allclose(ours, model(input_ids=ids).logits, atol=1e-5)  # fp32: the same attention
