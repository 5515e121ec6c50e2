"""Preference learning: the Bradley-Terry and DPO losses and their gradients against hand-computed
values; preference-pair loading and validation; reward-model training, export and scoring as a
reward term whose values reach the advantages; DPO through the learner's log-prob path; pairs
from graded samples; the LLM judge; the three jobs end to end on a tiny model."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from eval.samples import Sample
from reasoner.algorithms.preference import bradley_terry_loss, dpo_loss
from reasoner.config import CONF_DIR, AlgorithmConfig, DPOConfig, RewardModelConfig, to_config
from reasoner.data import BadRowError
from reasoner.data.preferences import (
    PreferencePair,
    load_pairs,
    prompt_text,
    sequence_ids,
    split_pairs,
    tokenize_pairs,
    write_pairs,
)
from reasoner.dpo import pair_logprobs, reference_logprobs, run_dpo
from reasoner.jobs.dpo import run_dpo_job
from reasoner.jobs.pairs import make_pairs, run_pairs
from reasoner.jobs.rm import run_rm
from reasoner.learned_rewards import JudgeTerm, RewardModelTerm, group_normalize, merge_moments, parse_verdict
from reasoner.logprobs import sequence_logprobs
from reasoner.prompts import Template
from reasoner.reward_model import load_reward_model, pairwise_accuracy, score_batches, train_reward_model
from reasoner.rewards import Reward
from reasoner.rl_step import estimate_advantages, render_prompts, to_train_batch
from reasoner.types import Completion, Problem, PromptBatch, RolloutBatch

sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731


def test_bradley_terry_loss_and_gradient_match_hand_computed_values():
    chosen = torch.tensor([1.0, 0.0], requires_grad=True)
    rejected = torch.tensor([0.0, 2.0], requires_grad=True)
    loss = bradley_terry_loss(chosen, rejected, torch.tensor([0.0, 0.5]))
    # -log σ(Δ - m): Δ - m = 1 and -2.5
    assert loss.tolist() == pytest.approx([math.log(1 + math.exp(-1)), math.log(1 + math.exp(2.5))], rel=1e-6)
    loss.sum().backward()
    # d/dr_chosen = -σ(-(Δ - m)); d/dr_rejected = +σ(-(Δ - m))
    assert chosen.grad.tolist() == pytest.approx([-sigmoid(-1), -sigmoid(2.5)], rel=1e-6)
    assert rejected.grad.tolist() == pytest.approx([sigmoid(-1), sigmoid(2.5)], rel=1e-6)
    # stable far out: no inf / nan
    assert torch.isfinite(bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))).all()


def test_dpo_sigmoid_conservative_and_ipo_losses_and_gradients_match_hand_computed_values():
    def run(**kw):
        pc = torch.tensor([-5.0], requires_grad=True)
        pr = torch.tensor([-7.0], requires_grad=True)
        terms = dpo_loss(pc, pr, torch.tensor([-6.0]), torch.tensor([-6.0]), **kw)
        terms.loss.sum().backward()
        return terms, pc.grad.item(), pr.grad.item()

    # h = (-5 + 6) - (-7 + 6) = 2
    terms, g_c, g_r = run(beta=0.1)
    assert terms.loss.item() == pytest.approx(math.log(1 + math.exp(-0.2)), rel=1e-6)
    assert g_c == pytest.approx(-0.1 * sigmoid(-0.2), rel=1e-6) and g_r == pytest.approx(0.1 * sigmoid(-0.2), rel=1e-6)
    assert terms.chosen_reward.item() == pytest.approx(0.1) and terms.rejected_reward.item() == pytest.approx(-0.1)
    terms, g_c, _ = run(beta=0.1, label_smoothing=0.1)
    expected = 0.9 * math.log(1 + math.exp(-0.2)) + 0.1 * math.log(1 + math.exp(0.2))
    assert terms.loss.item() == pytest.approx(expected, rel=1e-6)
    assert g_c == pytest.approx(-0.1 * (0.9 * sigmoid(-0.2) - 0.1 * sigmoid(0.2)), rel=1e-6)
    terms, g_c, g_r = run(beta=0.1, kind="ipo")  # (h - 1/(2β))² = (2 - 5)² = 9
    assert terms.loss.item() == pytest.approx(9.0) and g_c == pytest.approx(-6.0) and g_r == pytest.approx(6.0)
    for bad in ({"beta": 0.0}, {"beta": 0.1, "kind": "kto"}, {"beta": 0.1, "kind": "ipo", "label_smoothing": 0.1}):
        with pytest.raises(ValueError):
            run(**bad)


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_pairs_load_validated_with_the_bad_row_and_field_named(tmp_path):
    good = {"prompt": "1+1?", "chosen": "2", "rejected": "3", "margin": 0.5, "answer": 2}
    src = _write_jsonl(tmp_path / "p.jsonl", [good, {"prompt": "2+2?", "chosen": "4", "rejected": "5"}])
    pairs = load_pairs(src)
    assert pairs[0] == PreferencePair("0", "1+1?", "2", "3", 0.5, "2") and pairs[1].margin == 0.0
    write_pairs(tmp_path / "again.jsonl", pairs)
    assert load_pairs(str(tmp_path / "again.jsonl")) == pairs
    cases = [
        ({"prompt": "x", "chosen": "a"}, "row 2: missing field 'rejected'"),
        ({"prompt": "x", "chosen": "a", "rejected": "a"}, "row 2: fields 'chosen' and 'rejected' are the same"),
        ({"prompt": "x", "chosen": "a", "rejected": "b", "margin": -1}, "row 2: field 'margin' must be"),
        ({"prompt": " ", "chosen": "a", "rejected": "b"}, "row 2: field 'prompt' is empty"),
        ({"prompt": "x", "chosen": 3, "rejected": "b"}, "row 2: field 'chosen' must be a string"),
        ("{not json", "row 2: not valid JSON"),
    ]
    for row, message in cases:
        bad = _write_jsonl(tmp_path / "bad.jsonl", [good, row])
        with pytest.raises(BadRowError, match=message.replace("(", r"\(")):
            load_pairs(bad)
        assert [p.prompt for p in load_pairs(bad, on_bad_row="skip")] == ["1+1?"]


def test_split_keeps_the_pairs_of_a_prompt_together():
    pairs = [PreferencePair(f"{i}.{j}", f"q{i}", f"a{j}", f"b{j}") for i in range(10) for j in range(3)]
    train, held = split_pairs(pairs, 0.3, seed=0)
    assert len(train) + len(held) == 30 and len(held) == 9
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    with pytest.raises(ValueError, match="one side would be empty"):
        split_pairs(pairs[:3], 0.3, seed=0)


def test_pair_tokens_share_the_prompt_and_end_with_the_end_of_turn_token(smol_dir):
    tok = AutoTokenizer.from_pretrained(smol_dir)
    pair = PreferencePair("0", "What is 2+3?", "The answer is \\boxed{5}.", "It is 6.")
    (toks,), dropped = tokenize_pairs(tok, [pair], Template.plain, 256)
    head = prompt_text(tok, pair.prompt, Template.plain)
    assert dropped == 0 and toks.chosen[: toks.prompt_len] == toks.rejected[: toks.prompt_len]
    assert tok.decode(toks.chosen[: toks.prompt_len]) == head
    assert toks.chosen[-1] == toks.rejected[-1] == tok.eos_token_id
    assert sequence_ids(tok, head, pair.chosen + tok.eos_token)[0] == toks.chosen  # no second end token
    assert tokenize_pairs(tok, [pair], Template.plain, toks.prompt_len + 3) == ([], 1)
    # the RL step's prompt text (decoded prompt ids) is this same text: what a reward term receives
    assert render_prompts(tok, [Problem("0", pair.prompt, "5")], Template.plain).texts == [head]


def _arith_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    """Pairs whose chosen completion boxes the right sum and whose rejected one rambles."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        out.append(
            PreferencePair(
                str(i),
                f"What is {a} + {b}?",
                f"The final answer is \\boxed{{{a + b}}}.",
                rng.choice(["hmm", "I'm not sure, maybe later"]),
            )
        )
    return out


def test_reward_model_learns_held_out_pairs_and_exports_with_the_same_scores(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    train, _ = tokenize_pairs(tok, _arith_pairs(64), Template.plain, 128)
    held, _ = tokenize_pairs(tok, _arith_pairs(32, seed=1), Template.plain, 128)
    rm = load_reward_model(tiny_model_dir, tok.pad_token_id, new_head=True)
    before, _ = pairwise_accuracy(rm, held, tok.pad_token_id)
    cfg = RewardModelConfig(lr=1e-3, epochs=2, batch_size=8, micro_batch_size=4)
    stats = train_reward_model(rm, train, cfg, tok.pad_token_id, seed=0)
    after, gaps = pairwise_accuracy(rm, held, tok.pad_token_id)
    assert stats.steps == 16 and stats.pairs == 64
    assert after == 32 and gaps.min() > 0  # every held-out pair; before: a random head
    assert before < 0.9 * 32
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    seqs = [p.chosen for p in held[:4]]
    assert torch.allclose(
        score_batches(again, seqs, tok.pad_token_id, 4, bf16=False),
        score_batches(rm, seqs, tok.pad_token_id, 4, bf16=False),
        atol=1e-5,
    )


def test_reward_model_term_scores_a_batch_and_its_reward_reaches_the_advantages(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="not a trained reward model"):  # a causal LM: its head would be random
        RewardModelTerm(str(tiny_model_dir))
    rm = load_reward_model(tiny_model_dir, tok.pad_token_id, new_head=True)
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    term = RewardModelTerm(str(tmp_path / "rm"), bf16=False)
    problems = [Problem("a", "What is 2 + 3?", "5"), Problem("b", "What is 1 + 1?", "2")]
    texts = [prompt_text(tok, p.problem, Template.plain) for p in problems]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    replies = [["\\boxed{5}", "six", "I think 5", "no idea"], ["2", "\\boxed{3}", "two", "eleven"]]
    completions = [[Completion(tok(r)["input_ids"], r, [], "stop") for r in group] for group in replies]
    rollouts = RolloutBatch(PromptBatch(problems, ids, texts), completions)
    scored = Reward([(1.0, term)])(rollouts)
    flat_prompts = [t for t in texts for _ in range(4)]
    flat_problems = [p for p in problems for _ in range(4)]
    raw = term.raw_scores(flat_problems, flat_prompts, [c for g in completions for c in g])
    assert torch.allclose(scored.rewards.flatten(), raw) and scored.terms["rm"].shape == (2, 4)
    assert scored.correct is None  # a learned reward does not judge correctness
    batch = estimate_advantages(to_train_batch(scored), AlgorithmConfig(), 0.0)
    adv = torch.stack([a[0] for a in batch.advantages]).reshape(2, 4)
    expected = (raw.reshape(2, 4) - raw.reshape(2, 4).mean(-1, keepdim=True)) / (
        raw.reshape(2, 4).std(-1, keepdim=True) + 1e-6
    )
    assert torch.allclose(adv, expected, atol=1e-4) and adv.abs().sum() > 0
    # normalized variants
    assert torch.allclose(group_normalize(raw, flat_prompts), expected.flatten(), rtol=0.2, atol=0.2)
    running = RewardModelTerm(str(tmp_path / "rm"), normalize="running", bf16=False)
    first = running(problems, flat_prompts[:4], completions[0]).values
    assert first.mean().abs() < 1e-5
    with pytest.raises(ValueError, match="normalize"):
        RewardModelTerm(str(tmp_path / "rm"), normalize="zscore")


def test_running_moments_equal_the_moments_of_everything_seen():
    x = torch.randn(50, dtype=torch.float64)
    state = (0, 0.0, 0.0)
    for part in (x[:7], x[7:8], x[8:30], x[30:]):
        state = merge_moments(*state, part)
    n, mean, m2 = state
    assert n == 50 and mean == pytest.approx(float(x.mean())) and m2 / n == pytest.approx(float(x.var(unbiased=False)))


def test_dpo_log_probs_are_the_learners_and_training_widens_the_margin(tiny_model_dir):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    pairs, _ = tokenize_pairs(tok, _arith_pairs(32), Template.plain, 128)
    chosen, rejected = pair_logprobs(policy.eval(), pairs[:3], tok.pad_token_id, bf16=False)
    for p, c, r in zip(pairs[:3], chosen, rejected):  # prompt-shared micro-batch == each row alone
        assert c.item() == pytest.approx(sum(sequence_logprobs(policy, p.chosen, p.prompt_len, False)), abs=2e-3)
        assert r.item() == pytest.approx(sum(sequence_logprobs(policy, p.rejected, p.prompt_len, False)), abs=2e-3)
    ref = reference_logprobs(policy, pairs, tok.pad_token_id, 8, bf16=False)
    stats = run_dpo(policy, pairs, DPOConfig(lr=1e-3, beta=0.1, batch_size=8), tok.pad_token_id, bf16=False)
    after = reference_logprobs(policy, pairs, tok.pad_token_id, 8, bf16=False)
    margin = (after - ref)[:, 0] - (after - ref)[:, 1]
    assert stats.steps == 4 and stats.reward_accuracy > 0.5 and stats.final_loss < math.log(2)
    assert (margin > 0).float().mean() > 0.9


def _sample(pid, index, text, correct):
    return Sample("pairs", pid, index, "", text, 3, False, correct, float(correct), None, "x")


def test_pairs_join_right_and_wrong_samples_of_one_problem_each_once():
    problems = [Problem("p", "1+1", "2"), Problem("q", "2+2", "4"), Problem("r", "3+3", "6")]
    samples = [
        *(_sample("p", i, t, c) for i, (t, c) in enumerate([("2", 1), ("3", 0), ("2", 1), ("two", 1), ("5", 0)])),
        *(_sample("q", i, "4", True) for i in range(3)),  # all right: no pair
        _sample("q", 3, "  ", False),  # empty: left out
        Sample("pairs", "q", 4, "", "4 is the answer, or", 3, True, False, 0.0, None, "x"),  # cut off: left out
        _sample("r", 0, "6", True),
        _sample("r", 1, "7", False),
    ]
    pairs = make_pairs(samples, problems, per_prompt=4, rng=random.Random(0))
    by = {}
    for p in pairs:
        by.setdefault(p.prompt, []).append(p)
    assert set(by) == {"1+1", "3+3"}
    # "2" twice counts once: {2, two} x {3, 5}, every combination once
    assert sorted((p.chosen, p.rejected) for p in by["1+1"]) == [("2", "3"), ("2", "5"), ("two", "3"), ("two", "5")]
    assert by["3+3"][0].answer == "6" and by["3+3"][0].meta["rejected_sample"] == 1
    two = make_pairs(samples, problems, per_prompt=2, rng=random.Random(0))
    assert [p.prompt for p in two] == ["1+1", "1+1", "3+3"] and len({(p.chosen, p.rejected) for p in two}) == 3


def test_judge_verdicts_are_parsed_and_the_embedded_model_answers(smol_dir):
    assert parse_verdict("Yes, it is.") is True and parse_verdict("no") is False
    assert parse_verdict("NO. yes") is False and parse_verdict("Yesterday") is None and parse_verdict("") is None
    judge = JudgeTerm(str(smol_dir), max_new_tokens=4, batch_size=4)
    problems = [Problem("a", "What is 2 + 3?", "5")] * 2
    completions = [Completion([], t, [], "stop") for t in ("The final answer is \\boxed{5}.", "\\boxed{9}")]
    scores = judge(problems, ["", ""], completions)
    # the 135M model's verdicts are weak: only their form is checked
    assert scores.values.shape == (2,) and set(scores.values.tolist()) <= {0.0, 1.0}
    assert judge.unparsed <= 2


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return to_config(compose(config_name="config", overrides=overrides))


def test_rm_and_dpo_jobs_train_export_and_report(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, _arith_pairs(40))
    common = [f"model.path={tiny_model_dir}", "rollout=hf", "data.heldout_n=4", "trainer.eval_max_tokens=8"]
    rm = run_rm(_cfg([*common, f"rm.source={pairs}", "rm.lr=1e-3", "rm.epochs=2", "rm.batch_size=8"]), tmp_path / "rm")
    assert rm["pairs"] == {"train": 32, "heldout": 8, "dropped_too_long": 0}
    assert rm["heldout_accuracy"]["accuracy"] == 1.0 and rm["heldout_accuracy"]["n"] == 8
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm" / "model").config.num_labels == 1
    # as a reward term it renders prompts with the template it was trained with, whatever text it is given
    term = RewardModelTerm(str(tmp_path / "rm" / "model"), bf16=False)
    problems = [Problem("a", "What is 2 + 3?", "5")] * 2
    replies = [Completion([], t, [], "stop") for t in ("The final answer is \\boxed{5}.", "hmm")]
    assert term.template is Template.plain
    assert torch.equal(term(problems, ["", ""], replies).values, term(problems, ["junk", "junk"], replies).values)
    dpo = run_dpo_job(_cfg([*common, f"dpo.source={pairs}", "dpo.lr=1e-3", "dpo.batch_size=8"]), tmp_path / "dpo")
    assert set(dpo["heldout"]) == {"base", "after_dpo"} and dpo["dpo"]["steps"] == 4
    assert dpo["heldout_pairs_reward_accuracy"]["n"] == 8
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "dpo" / "checkpoint").config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="dpo.source is not set"):
        run_dpo_job(_cfg(common), tmp_path / "none")


def test_pairs_job_samples_the_rl_prompts_with_the_group_budget(tiny_model_dir, tmp_path):
    cfg = _cfg(
        [
            f"model.path={tiny_model_dir}",
            "rollout=hf",
            "data.heldout_n=4",
            "trainer.steps=2",
            "trainer.prompts_per_step=3",
            "algorithm.sampling.group_size=4",
            "rollout.max_tokens=8",
        ]
    )
    summary = run_pairs(cfg, tmp_path)
    assert summary["prompts"] == 6 and summary["samples"] == 24  # 2 steps x 3 prompts, 4 samples each
    assert (tmp_path / "pairs.jsonl").exists() and summary["pair_count"] == len(
        (tmp_path / "pairs.jsonl").read_text().splitlines()
    )
