"""Per-token log-probabilities (and entropy) of completion tokens under a causal LM.

Only the positions that predict a completion token go through the LM head, so the full
(n, L, V) logits tensor is never built, and those M positions go through it in chunks
(`head_logprobs`): the memory of the head is (chunk, V) for any micro-batch.

Prompt sharing: the G completions of a GRPO group share one prompt. When rows of a micro-batch
share a prompt, the decoder runs each distinct prompt once (left-padded, ``use_cache``), the
key/value cache is gathered to one copy per row, and only the completion tokens go through the
decoder again, attending to the cached prompt. The log-probs and their gradients are those of
the full rows (the cache stays in the autograd graph, so the gradient of a shared prompt sums
over the completions that attend to it; tested against the full-row path); the decoder's work
on prompts falls by the number of rows per distinct prompt. Under activation checkpointing
(``trainer.gradient_checkpointing``) rows run whole: a recomputed layer cannot follow a cache.

Packing (``trainer.packing``, on by default): a micro-batch runs instead as one row without
padding (`pack_rows`): each distinct prompt once, then the completions that share it, each
token at its own row's position, in one decoder pass whose attention goes segment by segment (a
prompt sees itself, a completion its prompt and itself: `reasoner.attention.Segments`). No
padding in the matmuls, no cache, and the same log-probs and gradients again (tested); it works
under activation checkpointing too. It needs the learner's own attention
(`reasoner.attention.PACKING_ATTENTION`, as `reasoner.models.load_policy` sets it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.checkpoint

from reasoner.attention import PACKING_ATTENTION, Segments


@functools.cache
def fast_bf16_cpu() -> bool:
    """Whether this CPU has fast bf16 matmul kernels (oneDNN's, on AVX-512 BF16 / AMX and the
    like). Without them torch runs bf16 matmuls through its reference GEMM
    (``cpublas::gemm_transa_``), many times slower than fp32, so bf16 autocast would slow the
    learner down instead of speeding it up (measured: README, "Results on this machine (2 CPU cores)")."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the probe: assume the kernels exist
        return True


def autocast(enabled: bool, even_if_slow: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, or on a CPU with fast bf16 kernels (`fast_bf16_cpu`; elsewhere fp32,
    with one warning, unless `even_if_slow`: the weight-sync check must round as the bf16 sampler
    does); weights and optimizer state stay fp32."""
    if not enabled:
        return contextlib.nullcontext()
    if torch.cuda.is_available():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if not (even_if_slow or fast_bf16_cpu()):
        _warn_slow_bf16()
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


@functools.cache
def _warn_slow_bf16() -> None:
    logging.getLogger("reasoner").warning(
        "trainer.bf16_autocast: this CPU has no fast bf16 matmul kernels (oneDNN reports none), so the learner "
        "computes in fp32 (bf16 would be about 20-30x slower here)"
    )


@dataclass
class PaddedBatch:
    """Right-padded micro-batch. Shapes (n, L); `completion_mask` (n, L-1) marks the targets that
    are completion tokens, `target_mask` (n, L-1) those of them the policy generated (its loss
    mask): only these are scored."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_mask: torch.Tensor
    prompt_lens: list[int]
    completion_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.completion_mask is None:
            self.completion_mask = self.target_mask

    def to(self, device: torch.device) -> PaddedBatch:
        """This batch with its tensors on `device` (itself when they are there already)."""
        if self.input_ids.device == device:
            return self
        shared = self.completion_mask is self.target_mask
        target = self.target_mask.to(device)
        completion = target if shared else self.completion_mask.to(device)
        return PaddedBatch(
            self.input_ids.to(device), self.attention_mask.to(device), target, self.prompt_lens, completion
        )


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of `module`'s first parameter (an FSDP2 ``DTensor``'s: its local shard's), where
    the module's inputs must be; the CPU for a module without parameters."""
    p = next(module.parameters(), None)
    return torch.device("cpu") if p is None else p.device


def pad_batch(
    sequences: list[list[int]], prompt_lens: list[int], pad_id: int, loss_masks: list[list[int]] | None = None
) -> PaddedBatch:
    """Right-pad sequences; target t (predicting token t+1) is a completion token iff t+1 >= P_i,
    and a target iff also its flag in `loss_masks` (T_i flags per sequence; default all ones) is 1."""
    n, length = len(sequences), max(len(s) for s in sequences)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    attn = torch.zeros((n, length), dtype=torch.long)
    completion = torch.zeros((n, length - 1), dtype=torch.bool)
    for i, (seq, p) in enumerate(zip(sequences, prompt_lens)):
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        completion[i, p - 1 : len(seq) - 1] = True
    target = completion
    if loss_masks is not None:
        target = completion.clone()
        target[completion] = torch.tensor([f for m in loss_masks for f in m], dtype=torch.bool)
    return PaddedBatch(ids, attn, target, list(prompt_lens), completion)


def completion_logprobs(
    model: torch.nn.Module,
    batch: PaddedBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    chunk_tokens: int = 2048,
    lockstep: bool = False,
    packing: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of each target token, log softmax(logits / temperature)[token].

    The model runs on its own device (`module_device`: a GPU, or the CPU); `batch` may be on the
    CPU, and the results come back on `batch`'s device, gradients flowing across. The per-token
    loss terms, a few (n, L) tensors, are computed there.

    The LM head, log-softmax and entropy run over the M target positions in chunks of
    `chunk_tokens` (`head_logprobs`), so at most (chunk_tokens, V) logits exist at a time.

    Args:
        model: a transformers causal LM (``get_decoder()`` and ``get_output_embeddings()``).
        batch: the padded micro-batch.
        temperature: the sampling temperature, so the log-probs are those of the sampler's
            distribution.
        with_entropy: also return the per-token entropy (nats).
        entropy_grad: keep the entropy's gradient (for an entropy bonus); else it has none.
        chunk_tokens: positions per LM-head chunk (``trainer.logits_chunk_tokens``).
        lockstep: run the decoder the same number of times whatever the rows: prompt sharing's
            two passes (prompts, then completions) even when no two rows share a prompt. FSDP2
            ranks need this: each decoder call is a round of collectives, which must pair up
            across the ranks. Packed micro-batches make one pass instead.
        packing: run the micro-batch as one packed row (`pack_rows`) when the model's attention
            is the learner's own (`reasoner.attention.PACKING_ATTENTION`); else padded rows.
    Returns:
        (logp, entropy): (n, L-1) float32, zero where ``target_mask`` is False; entropy likewise
        or None.
    """
    home, batch = batch.input_ids.device, batch.to(module_device(model))
    mask = batch.target_mask
    decoder = model.get_decoder()
    # activation checkpointing recomputes each layer in the backward pass, which a key/value
    # cache written in the forward pass cannot follow (transformers drops the cache): full rows
    recompute = decoder.training and getattr(decoder, "is_gradient_checkpointing", False)
    packable = getattr(decoder.config, "_attn_implementation", None) in PACKING_ATTENTION
    h = None
    if packing and packable:
        row = pack_rows(batch)
        h = decoder(
            input_ids=row.input_ids[None],
            attention_mask=row.segments.mask,
            position_ids=row.position_ids[None],
            segments=row.segments,
            use_cache=False,
        ).last_hidden_state[0, row.gather]
    elif not recompute:
        h = _shared_prompt_hidden(decoder, batch, always=lockstep)
    if h is not None and batch.completion_mask is not mask:
        h = h[mask[batch.completion_mask]]  # completion positions -> the policy's tokens
    if h is None:
        hidden = decoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
        ).last_hidden_state
        h = hidden[:, :-1][mask]  # (M, H)
    targets = batch.input_ids[:, 1:][mask]
    lp, ent = head_logprobs(
        model.get_output_embeddings(), h, targets, temperature, with_entropy, entropy_grad, chunk_tokens
    )
    logp = mask.new_zeros(mask.shape, dtype=torch.float32)
    logp[mask] = lp
    entropy = None
    if ent is not None:
        entropy = mask.new_zeros(mask.shape, dtype=torch.float32)
        entropy[mask] = ent
        entropy = entropy.to(home)
    return logp.to(home), entropy


class Scorer(torch.nn.Module):
    """`completion_logprobs` of a causal LM as one module call, ``scorer(batch, **kwargs)``, so that
    a wrapper of the whole pass sees it begin and end: FSDP2 shards a `Scorer` as its root unit
    (the embeddings, final norm and LM head, used outside the decoder layers' own calls)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.lm = model

    def forward(self, batch: PaddedBatch, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        return completion_logprobs(self.lm, batch, **kwargs)


def head_logprobs(
    head: torch.nn.Module,
    h: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool,
    entropy_grad: bool,
    chunk_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-position log-prob of the target and entropy of softmax(head(h) / temperature), over
    chunks of `chunk_tokens` positions.

    log p_t = z_{t, y_t} - logsumexp_v z_{t, v}; H_t = logsumexp_v z_{t, v} - Σ_v p_{t, v} z_{t, v}
    (z = logits / temperature, fp32). With a gradient and more than one chunk, each chunk runs
    under activation checkpointing (`torch.utils.checkpoint`, non-reentrant): its logits are
    freed after the forward pass and recomputed in the backward pass, so the memory of the
    logits is (chunk_tokens, V) however many positions there are, for one more LM-head matmul.
    One chunk (M <= chunk_tokens) runs as is. The values and gradients are those of the
    unchunked computation.

    Args:
        head: the LM head (``get_output_embeddings()``), H -> V.
        h: (M, H) hidden states at the target positions.
        targets: (M,) target token ids.
        temperature: divides the logits.
        with_entropy: also return the entropy.
        entropy_grad: keep the entropy's gradient; else it has none.
        chunk_tokens: positions per chunk, >= 1.
    Returns:
        (logp, entropy): (M,) float32 each; entropy None unless `with_entropy`.
    """

    def chunk(h_c: torch.Tensor, y_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = head(h_c).float() / temperature  # (C, V)
        logz = torch.logsumexp(logits, dim=-1)
        lp = logits.gather(-1, y_c[:, None]).squeeze(-1) - logz
        if not with_entropy:
            return lp, lp.new_empty(0)
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)
        return lp, ent

    spans = range(0, h.shape[0], chunk_tokens)
    if len(spans) <= 1 or not torch.is_grad_enabled():
        parts = [chunk(h[s : s + chunk_tokens], targets[s : s + chunk_tokens]) for s in spans] or [chunk(h, targets)]
    else:
        parts = [
            torch.utils.checkpoint.checkpoint(
                chunk, h[s : s + chunk_tokens], targets[s : s + chunk_tokens], use_reentrant=False
            )
            for s in spans
        ]
    lp = torch.cat([p[0] for p in parts])
    return lp, torch.cat([p[1] for p in parts]) if with_entropy else None


@dataclass
class PackedRow:
    """A micro-batch as one row of T tokens without padding (`pack_rows`). Shapes: `input_ids`
    and `position_ids` (T,); `segments`: which keys each token attends to; `gather` (M,): the
    row's positions whose hidden states predict the batch's completion tokens, in the order of
    ``hidden[:, :-1][completion_mask]`` of the padded batch (row-major)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segments: Segments
    gather: torch.Tensor


def pack_rows(batch: PaddedBatch) -> PackedRow:
    """`batch` as one row: each distinct prompt once (in order of first appearance), then the
    completions of the rows that share it. A prompt token attends causally within its prompt; a
    completion token to its whole prompt and causally within its own completion; each token keeps
    its padded row's position (a completion's j-th token: prompt length + j). So every hidden
    state is its full row's, and the row holds T = (distinct prompts' tokens) + (completion
    tokens) positions, none of them padding. Its attention (`reasoner.attention.Segments`): one
    segment per non-empty completion, and per prompt, cut into pieces of at most the longest
    completion's length (each piece sees the pieces before it), so that no segment pads the others'
    queries to a long prompt."""
    ids, lens, prompts = _rows_by_prompt(batch)
    tokens: list[int] = []
    positions: list[int] = []
    spans: list[tuple[range, int, int]] = []  # (the keys all its queries see, its first query, its queries)
    targets: dict[int, list[int]] = {}
    for prompt, rows in prompts.items():
        start, p = len(tokens), len(prompt)
        tokens += prompt
        positions += range(p)
        spans.append((range(start, start), start, p))
        for i in rows:
            own, n = len(tokens), lens[i] - p
            tokens += ids[i][p : lens[i]]
            positions += range(p, lens[i])
            if n:
                spans.append((range(start, start + p), own, n))
            targets[i] = [start + p - 1, *range(own, own + n - 1)] if n else []
    # segments of at most `width` queries: a longer prompt is cut in pieces, each seeing the ones before
    width = max((n for seen, _, n in spans if len(seen)), default=0) or max(n for *_, n in spans)
    segs = [
        ([*seen, *range(first, first + k)], first + k, min(width, n - k))
        for seen, first, n in spans
        for k in range(0, n, width)
    ]
    dev = batch.input_ids.device
    lq, lk = max(n for *_, n in segs), max(len(seen) + n for seen, _, n in segs)
    a, j = torch.arange(lq)[:, None], torch.arange(lk)[None, :]
    query_index = torch.zeros((len(segs), lq), dtype=torch.long)
    key_index = torch.zeros((len(segs), lk), dtype=torch.long)
    mask = torch.zeros((len(segs), 1, lq, lk), dtype=torch.bool)
    rows_at = torch.zeros(len(tokens), dtype=torch.long)
    for k, (seen, first, n) in enumerate(segs):
        f = len(seen)
        query_index[k, :n] = torch.arange(first, first + n)
        key_index[k, : f + n] = torch.tensor([*seen, *range(first, first + n)], dtype=torch.long)
        mask[k, 0] = (j < f) | ((j - f <= a) & (j < f + n))
        mask[k, 0, n:] = j == 0  # padding queries: key 0 alone
        rows_at[first : first + n] = torch.arange(k * lq, k * lq + n)
    gather = [k for i in range(len(ids)) for k in targets[i]]
    segments = Segments(query_index.to(dev), key_index.to(dev), mask.to(dev), rows_at.to(dev))
    return PackedRow(
        torch.tensor(tokens, dtype=torch.long, device=dev),
        torch.tensor(positions, dtype=torch.long, device=dev),
        segments,
        torch.tensor(gather, dtype=torch.long, device=dev),
    )


def _rows_by_prompt(batch: PaddedBatch) -> tuple[list[list[int]], list[int], dict[tuple[int, ...], list[int]]]:
    """The batch's token ids and lengths as lists, and its distinct prompts (in order of first
    appearance), each with the rows that share it."""
    ids = batch.input_ids.tolist()
    prompts: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(batch.prompt_lens):
        prompts.setdefault(tuple(ids[i][:p]), []).append(i)
    return ids, batch.attention_mask.sum(-1).tolist(), prompts


def _shared_prompt_hidden(
    decoder: torch.nn.Module, batch: PaddedBatch, pad_id: int = 0, always: bool = False
) -> torch.Tensor | None:
    """Hidden states (M, H) at the completion positions of `batch` (row-major, the order of
    ``hidden[:, :-1][completion_mask]``), computing each distinct prompt once; None when no two
    rows share a prompt (the caller runs the full rows), unless `always` (then the two passes run
    anyway). `pad_id` fills padding (never attended)."""
    n, plens = batch.input_ids.shape[0], batch.prompt_lens
    ids, lens, prompts = _rows_by_prompt(batch)
    if len(prompts) == n and not always:
        return None
    owner = [0] * n  # each row's prompt, by index
    for u, rows in enumerate(prompts.values()):
        for i in rows:
            owner[i] = u
    width, dev = max(plens), batch.input_ids.device
    p_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    p_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for u, key in enumerate(prompts):  # left padding: every prompt ends in the last column
        p_ids[u, width - len(key) :] = torch.tensor(key)
        p_mask[u, width - len(key) :] = 1
    p_ids, p_mask = p_ids.to(dev), p_mask.to(dev)
    pre = decoder(
        input_ids=p_ids, attention_mask=p_mask, position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True
    )
    cache = pre.past_key_values
    rows = torch.tensor(owner, device=dev)
    cache.batch_select_indices(rows)  # one copy of its prompt's keys / values per row (a gather: gradients add up)
    comp_len = [lens[i] - plens[i] for i in range(n)]
    c_ids = torch.full((n, max(max(comp_len), 1)), pad_id, dtype=torch.long, device=dev)
    c_mask = torch.zeros_like(c_ids)
    for i in range(n):
        c_ids[i, : comp_len[i]] = batch.input_ids[i, plens[i] : lens[i]]
        c_mask[i, : comp_len[i]] = 1
    positions = torch.tensor(plens, device=dev)[:, None] + torch.arange(c_ids.shape[1], device=dev)
    out = decoder(
        input_ids=c_ids,
        attention_mask=torch.cat([p_mask[rows], c_mask], dim=-1),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    last = pre.last_hidden_state[:, -1]  # (U, H): predicts each completion's first token
    parts = []
    for i in range(n):  # targets of row i: positions P_i - 1 .. len_i - 2
        if comp_len[i]:
            parts += [last[owner[i]][None], out.last_hidden_state[i, : comp_len[i] - 1]]
    return torch.cat(parts) if parts else last[:0]  # (0, H): no completion token in the batch


def sequence_logprobs(model: torch.nn.Module, token_ids: list[int], prompt_len: int, bf16: bool) -> list[float]:
    """log p(token_t | tokens_<t) for each t >= `prompt_len` of one sequence (nats), under bf16
    autocast when `bf16` (to match a bf16 sampler: on every CPU, fast bf16 kernels or not, since
    fp32 log-probs of weights off the bf16 grid differ from the sampler's by more than a missed
    update would); `model` (a causal LM or its `Scorer`) is put in eval mode."""
    scorer = model if isinstance(model, Scorer) else Scorer(model)
    scorer.eval()
    with torch.no_grad(), autocast(bf16, even_if_slow=True):
        logp, _ = scorer(pad_batch([token_ids], [prompt_len], 0))
    return logp[0, prompt_len - 1 :].tolist()
