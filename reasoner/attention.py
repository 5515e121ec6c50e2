"""The learner's attention: fp32 on the CPU, and packed rows attended segment by segment.

**fp32 on the CPU.** Under bf16 autocast the query / key / value projections come out in bf16,
and torch's CPU flash-attention kernel then runs its backward pass in bf16, which on the CPUs
measured here is 2-3.5x slower than the same kernel in fp32 (BENCHMARKS.md, "Attention on the
CPU": one layer's completion-pass attention of one GRPO group, and one group's whole update, each
way). `sdpa_fp32` upcasts the three to fp32, runs the attention outside autocast, and casts the
output back: the matmuls around it stay bf16, the softmax and its gradient are computed in fp32
(more exact, not less). On a GPU the bf16 flash kernels are the fast path, and `sdpa_packed`
keeps the inputs' dtype.

**Packed rows** (`reasoner.logprobs.pack_rows`): a micro-batch laid out as one row without
padding, each prompt once and its completions after it. Attending the whole row under one
block-causal mask would cost T x T however little of it is visible; instead `Segments` lists,
for each prompt and each completion, its queries and the keys they see (the prompt's own tokens;
a completion's prompt and itself), and `segment_attention` gathers them into a padded batch of
segments, runs SDPA on it and puts each output back at its position in the row. The attention
then costs what the padded rows' attention costs, while every matmul outside it runs on the
row's tokens only.

Both are registered with transformers' ``AttentionInterface`` (`SDPA_FP32`, `SDPA_PACKED`),
together with SDPA's mask builder (transformers builds no attention mask for a name it has no
mask builder for); `reasoner.models.load_policy` picks one for the device it trains on
(`attention_for`). Called without segments, both are transformers' SDPA attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

#: the name `sdpa_fp32` is registered under (``attn_implementation``): the CPU's
SDPA_FP32 = "sdpa_fp32"
#: the name `sdpa_packed` is registered under: a GPU's
SDPA_PACKED = "sdpa_packed"
#: the implementations that attend a packed row by its `Segments`
PACKING_ATTENTION = frozenset({SDPA_FP32, SDPA_PACKED})


@dataclass
class Segments:
    """Which keys each query of a packed row of T tokens attends to, as S segments (a prompt, or
    one completion), padded to Lq queries and Lk keys each (`reasoner.logprobs.pack_rows`).

    Shapes: `query_index` (S, Lq) and `key_index` (S, Lk): positions in the row (padding entries
    point at position 0); `mask` (S, 1, Lq, Lk) bool, True where the query sees the key (a padding
    query sees key 0 alone, so that its softmax is defined; its output is dropped); `rows` (T,):
    for each position of the row, where its query is in the segments, flattened (s * Lq + a).
    Every position is the query of exactly one segment."""

    query_index: torch.Tensor
    key_index: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor


def segment_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    segments: Segments,
    scaling: float | None,
    repeat_heads: bool | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) v for each segment (`Segments`), back in row order.

    Args:
        query: (1, H, T, D). key, value: (1, H_kv, T, D); H a multiple of H_kv (grouped-query
            attention: each key / value head serves H / H_kv query heads, as transformers' ``repeat_kv``).
        segments: the packed row's segments.
        scaling: the softmax scale (None: 1 / sqrt(D)).
        repeat_heads: repeat the key / value heads to H before SDPA, or hand SDPA the grouped
            heads (``enable_gqa``). None: grouped on the CPU, whose kernels take them as they are
            (8.5 against 10.9 ms per layer of one GRPO group, forward and backward), repeated
            elsewhere (a masked SDPA with grouped heads falls back to the math kernel on a GPU;
            transformers repeats them too when it passes a mask).
    Returns:
        (1, T, H, D), as transformers' attention functions return it.
    """
    (s, lq), lk = segments.query_index.shape, segments.key_index.shape[1]
    # index_select, whose backward is an index_add (advanced indexing's is a serial index_put)
    q = query[0].index_select(1, segments.query_index.flatten()).unflatten(1, (s, lq)).transpose(0, 1)  # (S, H, Lq, D)
    k = key[0].index_select(1, segments.key_index.flatten()).unflatten(1, (s, lk)).transpose(0, 1)  # (S, H_kv, Lk, D)
    v = value[0].index_select(1, segments.key_index.flatten()).unflatten(1, (s, lk)).transpose(0, 1)
    groups = q.shape[1] // k.shape[1]
    repeat = query.device.type != "cpu" if repeat_heads is None else repeat_heads
    if groups > 1 and repeat:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=segments.mask, scale=scaling, enable_gqa=groups > 1 and not repeat
    )
    out = out.transpose(1, 2).flatten(0, 1)  # (S * Lq, H, D)
    return out.index_select(0, segments.rows)[None]  # (1, T, H, D)


def sdpa_packed(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *args: Any,
    segments: Segments | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """`segment_attention` when the call carries `segments` (a packed row: then `attention_mask`
    is ``segments.mask``), else transformers' ``sdpa_attention_forward``; returns the output
    (B, Lq, H, D) and None (no attention weights). Shapes: `query` (B, H, Lq, D), `key` and
    `value` (B, H_kv, Lk, D)."""
    if segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)[0], None
    return segment_attention(query, key, value, segments, kwargs.get("scaling")), None


def sdpa_fp32(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *args: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """`sdpa_packed` on fp32 copies of `query` (B, H, Lq, D), `key` and `value` (B, H_kv, Lk, D),
    with autocast off; returns its output (B, Lq, H, D) in `query`'s dtype, and None (no
    attention weights)."""
    with torch.autocast(query.device.type, enabled=False):
        out, _ = sdpa_packed(module, query.float(), key.float(), value.float(), attention_mask, *args, **kwargs)
    return out.to(query.dtype), None


def attention_for(device: torch.device) -> str:
    """The ``attn_implementation`` for a model trained on `device` (registered here):
    `SDPA_FP32` on the CPU, `SDPA_PACKED` elsewhere."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    name, function = (SDPA_FP32, sdpa_fp32) if device.type == "cpu" else (SDPA_PACKED, sdpa_packed)
    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, sdpa_mask)  # else transformers builds no mask at all
    return name
