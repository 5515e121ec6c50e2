"""Prompt sharing in `reasoner.logprobs.completion_logprobs` gives the log-probs and gradients of
the full rows (fp32, tiny random Llama): rows sharing a prompt, prompts of other lengths, a
row with a prompt of its own, a one-token and an empty completion."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.attention import attention_for
from reasoner.logprobs import _shared_prompt_hidden, completion_logprobs, pad_batch


def _rows():
    g = torch.Generator().manual_seed(0)
    tok = lambda n: torch.randint(100, 5000, (n,), generator=g).tolist()  # noqa: E731
    p1, p2, p3 = tok(5), tok(9), tok(7)
    seqs = [p1 + tok(6), p1 + tok(1), p1 + tok(12), p2 + tok(3), p2 + tok(8), p3 + tok(4), p1]
    plens = [5, 5, 5, 9, 9, 7, 5]
    return seqs, plens


def _full_rows(model, batch, temperature):
    """The reference: every row through the whole model, log softmax over the vocabulary."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float() / temperature
    lp = torch.log_softmax(logits, dim=-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return lp * batch.target_mask


@pytest.mark.parametrize("attention", ["sdpa", "cpu training (fp32 attention)"])
def test_shared_prompts_give_the_full_rows_logprobs_and_gradients(tiny_model_dir, attention):
    seqs, plens = _rows()
    batch = pad_batch(seqs, plens, 0)
    impl = attention if attention == "sdpa" else attention_for(torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=impl)
    assert model.config._attn_implementation == impl
    assert _shared_prompt_hidden(model.get_decoder(), batch) is not None  # the shared path runs

    shared, _ = completion_logprobs(model, batch, temperature=0.7)
    shared.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full = _full_rows(model, batch, 0.7)
    full.sum().backward()

    assert batch.target_mask.sum() == 6 + 1 + 12 + 3 + 8 + 4
    assert torch.allclose(shared, full, atol=1e-5), (shared - full).abs().max()
    for name, p in model.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-5, rtol=1e-4), name


def test_distinct_prompts_take_the_full_row_path_unless_in_lockstep(tiny_model_dir):
    """In lockstep (FSDP2 ranks) the two passes run anyway, with the full rows' values and gradients."""
    seqs, plens = _rows()
    batch = pad_batch([seqs[0], seqs[3], seqs[5]], [plens[0], plens[3], plens[5]], 0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert _shared_prompt_hidden(model.get_decoder(), batch) is None
    with torch.no_grad():
        lp, _ = completion_logprobs(model, batch)
        assert torch.allclose(lp, _full_rows(model, batch, 1.0), atol=1e-5)

    assert _shared_prompt_hidden(model.get_decoder(), batch, always=True) is not None
    two_pass, _ = completion_logprobs(model, batch, lockstep=True)
    two_pass.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full = _full_rows(model, batch, 1.0)
    full.sum().backward()
    assert torch.allclose(two_pass, full, atol=1e-5), (two_pass - full).abs().max()
    for name, p in model.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-5, rtol=1e-4), name

    empty = pad_batch([seqs[6], seqs[3][:9]], [5, 9], 0)  # no completion token at all
    lp, _ = completion_logprobs(model, empty, lockstep=True)
    assert lp.shape == empty.target_mask.shape and not lp.any()
