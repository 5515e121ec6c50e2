"""Per-token log-probabilities (and entropy) of completion tokens under a causal LM.

Only the positions that predict a completion token go through the LM head, so the full
(n, L, V) logits tensor is never built: the memory of the head is (M, V) for the M completion
tokens of a micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PaddedBatch:
    """Right-padded micro-batch. Shapes (n, L); `target_mask` (n, L-1) marks completion targets."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_mask: torch.Tensor


def pad_batch(sequences: list[list[int]], prompt_lens: list[int], pad_id: int) -> PaddedBatch:
    """Right-pad sequences; target t (predicting token t+1) is a completion token iff t+1 >= P_i."""
    n, length = len(sequences), max(len(s) for s in sequences)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    attn = torch.zeros((n, length), dtype=torch.long)
    target = torch.zeros((n, length - 1), dtype=torch.bool)
    for i, (seq, p) in enumerate(zip(sequences, prompt_lens)):
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        target[i, p - 1 : len(seq) - 1] = True
    return PaddedBatch(ids, attn, target)


def completion_logprobs(
    model: torch.nn.Module,
    batch: PaddedBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of each target token, log softmax(logits / temperature)[token].

    Args:
        model: a transformers causal LM (``get_decoder()`` and ``get_output_embeddings()``).
        batch: the padded micro-batch.
        temperature: the sampling temperature, so the log-probs are those of the sampler's
            distribution.
        with_entropy: also return the per-token entropy (nats).
        entropy_grad: keep the entropy's gradient (for an entropy bonus); else it has none.
    Returns:
        (logp, entropy): (n, L-1) float32, zero where ``target_mask`` is False; entropy likewise
        or None.
    """
    hidden = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    mask = batch.target_mask
    h = hidden[:, :-1][mask]  # (M, H)
    logits = model.get_output_embeddings()(h).float() / temperature  # (M, V)
    logz = torch.logsumexp(logits, dim=-1)
    targets = batch.input_ids[:, 1:][mask]
    lp = logits.gather(-1, targets[:, None]).squeeze(-1) - logz
    logp = torch.zeros(mask.shape, dtype=torch.float32)
    logp[mask] = lp
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            probs = torch.softmax(logits, dim=-1)
            ent = logz - (probs * logits).sum(-1)
            entropy = torch.zeros(mask.shape, dtype=torch.float32)
            entropy[mask] = ent
    return logp, entropy
