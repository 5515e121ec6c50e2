"""Prompt sharing and packing in `reasoner.logprobs.completion_logprobs` give the log-probs and
gradients of the full rows (fp32, tiny random Llama): rows sharing a prompt, prompts of other
lengths, a row with a prompt of its own, a one-token and an empty completion."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.attention import attention_for
from reasoner.logprobs import _shared_prompt_hidden, completion_logprobs, pack_rows, pad_batch


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


def _assert_full_rows(model, batch, lp, temperature):
    """`lp` (its graph still there) equals the full rows' log-probs, and its gradient theirs. fp32
    noise scales with the gradient: the long prompt's tied embedding gradient reaches 5.6 (max
    abs difference 3.5e-5 there, the same for prompt sharing as for packing)."""
    lp.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full = _full_rows(model, batch, temperature)
    full.sum().backward()
    assert torch.allclose(lp, full, atol=1e-5), (lp - full).abs().max()
    for name, p in model.named_parameters():
        scale = max(1.0, float(p.grad.abs().max()))
        assert torch.allclose(grads[name], p.grad, atol=1e-5 * scale, rtol=1e-4), name


@pytest.mark.parametrize("attention", ["sdpa", "cpu training (fp32 attention)"])
def test_shared_prompts_give_the_full_rows_logprobs_and_gradients(tiny_model_dir, attention):
    seqs, plens = _rows()
    batch = pad_batch(seqs, plens, 0)
    impl = attention if attention == "sdpa" else attention_for(torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=impl)
    assert model.config._attn_implementation == impl
    assert _shared_prompt_hidden(model.get_decoder(), batch) is not None  # the shared path runs

    assert batch.target_mask.sum() == 6 + 1 + 12 + 3 + 8 + 4
    shared, _ = completion_logprobs(model, batch, temperature=0.7)
    _assert_full_rows(model, batch, shared, 0.7)


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
    _assert_full_rows(model, batch, two_pass, 1.0)

    empty = pad_batch([seqs[6], seqs[3][:9]], [5, 9], 0)  # no completion token at all
    lp, _ = completion_logprobs(model, empty, lockstep=True)
    assert lp.shape == empty.target_mask.shape and not lp.any()


def _decoder_calls(model):
    """The (rows, tokens) of every decoder pass `model` makes from now on, in a list."""
    calls = []
    record = lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape)  # noqa: E731
    model.get_decoder().register_forward_hook(record, with_kwargs=True)
    return calls


def _visible(packed):
    """The (T, T) matrix of which key each query of the packed row sees, from its segments."""
    seg, t = packed.segments, len(packed.input_ids)
    lq = seg.query_index.shape[1]
    seen = torch.zeros(t, t, dtype=torch.bool)
    for pos, at in enumerate(seg.rows.tolist()):
        s, a = divmod(at, lq)
        assert seg.query_index[s, a] == pos
        seen[pos, seg.key_index[s][seg.mask[s, 0, a]]] = True
    return seen


def test_pack_rows_lays_each_prompt_once_then_its_completions_each_seeing_its_prompt_and_itself():
    seqs, plens = _rows()
    packed = pack_rows(pad_batch(seqs, plens, 0))
    p1, p2, p3 = seqs[0][:5], seqs[3][:9], seqs[5][:7]
    c = [s[p:] for s, p in zip(seqs, plens)]
    assert packed.input_ids.tolist() == p1 + c[0] + c[1] + c[2] + c[6] + p2 + c[3] + c[4] + p3 + c[5]
    assert len(packed.input_ids) == 5 + 9 + 7 + 6 + 1 + 12 + 3 + 8 + 4  # no padding, each prompt once
    assert packed.position_ids[:11].tolist() == list(range(11))  # p1, then row 0 at 5..10
    assert packed.position_ids[11].item() == 5  # row 1's one token follows p1 as in its own row
    # the hidden state before each completion token: p1's last token first, then row 0's own
    assert packed.gather[:7].tolist() == [4, 5, 6, 7, 8, 9, 4]
    assert len(packed.gather) == 6 + 1 + 12 + 3 + 8 + 4
    # segments: 6 completions (row 6's is empty) of at most 12 tokens, the prompts of at most 12
    # too (none cut: p2, of 9, is the longest); every token a query exactly once
    seg = packed.segments
    assert seg.query_index.shape == (9, 12) and seg.rows.unique().numel() == 55
    assert torch.equal(seg.query_index.flatten()[seg.rows], torch.arange(55))
    # what each token sees, against the rule written out: same prompt, causal, and a completion
    # token never sees another completion
    prompt_of = torch.tensor([0] * 24 + [1] * 20 + [2] * 11)
    row_of = torch.tensor([-1] * 5 + [0] * 6 + [1] + [2] * 12 + [-1] * 9 + [3] * 3 + [4] * 8 + [-1] * 7 + [5] * 4)
    t = torch.arange(55)
    rule = (t[:, None] >= t[None, :]) & (prompt_of[:, None] == prompt_of[None, :])
    rule &= (row_of[None, :] < 0) | (row_of[:, None] == row_of[None, :])
    assert torch.equal(_visible(packed), rule)


def test_a_prompt_longer_than_every_completion_is_cut_into_pieces_that_see_the_ones_before():
    seqs, plens = _long_prompt_rows()
    packed = pack_rows(pad_batch(seqs, plens, 0))
    seg = packed.segments
    assert seg.query_index.shape == (4 + 2, 5)  # 20 prompt tokens in 4 pieces of 5, then 2 completions
    t, prompt = torch.arange(28), torch.arange(28) < 20
    row_of = torch.tensor([-1] * 20 + [0] * 3 + [1] * 5)
    rule = (t[:, None] >= t[None, :]) & (prompt[None, :] | (row_of[:, None] == row_of[None, :]))
    assert torch.equal(_visible(packed), rule)


def _long_prompt_rows():
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(100, 5000, (20,), generator=g).tolist()
    return [prompt + torch.randint(100, 5000, (n,), generator=g).tolist() for n in (3, 5)], [20, 20]


@pytest.mark.parametrize("device", ["cpu", "cuda"])  # the CPU's fp32 attention, a GPU's (run here on the CPU)
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("rows", ["varied", "long prompt"])
def test_packed_rows_give_the_full_rows_logprobs_and_gradients(tiny_model_dir, device, checkpointing, rows):
    seqs, plens = _rows() if rows == "varied" else _long_prompt_rows()
    flags = [[int(k % 3 != 1) for k in range(len(s) - p)] for s, p in zip(seqs, plens)]  # a loss mask with holes
    batch = pad_batch(seqs, plens, 0, flags)
    impl = attention_for(torch.device(device))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=impl)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    calls = _decoder_calls(model)
    packed, _ = completion_logprobs(model, batch, temperature=0.7, packing=True)
    assert calls == [torch.Size([1, 55 if rows == "varied" else 28])]  # one pass over the packed row
    _assert_full_rows(model, batch, packed, 0.7)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_without_the_learners_attention_packing_falls_back_to_prompt_sharing(tiny_model_dir, impl):
    """transformers' own attention functions know nothing of segments: the rows run padded, with
    prompt sharing's two passes (in lockstep too)."""
    seqs, plens = _rows()
    batch = pad_batch(seqs, plens, 0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=impl)
    calls = _decoder_calls(model)
    with torch.no_grad():
        reference = _full_rows(model, batch, 1.0)
        for lockstep in (False, True):
            calls.clear()
            lp, _ = completion_logprobs(model, batch, lockstep=lockstep, packing=True)
            assert [tuple(c) for c in calls] == [(3, 9), (7, 12)]
            assert torch.allclose(lp, reference, atol=1e-5)
