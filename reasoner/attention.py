"""Attention in float32 for models trained on a CPU under bf16 autocast.

Under bf16 autocast the query / key / value projections come out in bf16, and torch's CPU
flash-attention kernel then runs its backward pass in bf16, which on the CPUs measured here is
2-3.5x slower than the same kernel in fp32 (BENCHMARKS.md, "Attention on the CPU": one layer's
completion-pass attention of one GRPO group, and one group's whole update, each way).
`sdpa_fp32` upcasts the three to fp32, runs transformers' SDPA attention outside autocast, and
casts the output back: the matmuls around it stay bf16, the softmax and its gradient are
computed in fp32 (more exact, not less). It is registered with transformers'
``AttentionInterface`` under `SDPA_FP32`, with SDPA's mask builder (transformers builds no
attention mask for a name it has no mask builder for); `reasoner.models.load_policy` picks it
for a model trained on the CPU (`attention_for`). On a GPU the bf16 flash kernels are the fast
path, and ``sdpa`` stays.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

#: the name `sdpa_fp32` is registered under (``attn_implementation``)
SDPA_FP32 = "sdpa_fp32"


def sdpa_fp32(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *args: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa_attention_forward`` on fp32 copies of `query` (B, H, Lq, D), `key`
    and `value` (B, H_kv, Lk, D), with autocast off; returns its output (B, Lq, H, D) in
    `query`'s dtype, and None (no attention weights)."""
    with torch.autocast(query.device.type, enabled=False):
        out, _ = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, *args, **kwargs
        )
    return out.to(query.dtype), None


def attention_for(device: torch.device) -> str:
    """The ``attn_implementation`` for a model trained on `device`: `SDPA_FP32` (registered
    here) on the CPU, transformers' ``sdpa`` elsewhere."""
    if device.type != "cpu":
        return "sdpa"
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SDPA_FP32, sdpa_fp32)
    AttentionMaskInterface.register(SDPA_FP32, sdpa_mask)  # else transformers builds no mask at all
    return SDPA_FP32
