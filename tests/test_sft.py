"""SFT: targets in the reasoning format, length-grouped batches, gradient checkpointing, the
cleaned data set, and `reasoner-sft` end to end on a tiny model."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasoner.config import CONF_DIR, SFTConfig, register_configs
from reasoner.data import BadRowError, load_problems
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.common import load_sft_problems
from reasoner.jobs.sft import run_sft_job
from reasoner.prompts import Template, clean_solution, target_text
from reasoner.sft import length_grouped_batches, run_sft
from verifiers.format import verify_format

register_configs()


def _cfg(extra):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return to_run_config(compose(config_name="config", overrides=extra))


def test_worked_solutions_become_think_targets_that_pass_the_format_check():
    gsm = load_problems("vendored:gsm8k_train", n=50, seed=0)
    math = load_problems("vendored:math_train", n=50, seed=0)
    for p in gsm + math:
        target = target_text(p, Template.r1)
        assert verify_format(target, "r1").correct, target
        reasoning = target.split("</think>")[0]
        assert "<<" not in reasoning and "####" not in reasoning and "\\boxed{" not in reasoning
        assert target.endswith(f"\\boxed{{{p.answer}}}.")
    assert clean_solution("She has 3*4 = <<3*4=12>>12 apples.\n#### 12") == "She has 3*4 = 12 apples."
    assert clean_solution("so $x = \\boxed{\\frac{1}{2}}$.") == "so $x = \\frac{1}{2}$."


def test_verbatim_rows_are_their_own_target(tmp_path):
    path = tmp_path / "rows.jsonl"
    completion = "<think>\n2 + 2 is 4\n</think>\nThe final answer is \\boxed{4}."
    path.write_text(
        json.dumps(
            {
                "id": "a",
                "problem": "2+2?",
                "answer": "4",
                "solution": completion,
                "target": "verbatim",
                "provenance": {"model": "m"},
            }
        )
        + "\n"
    )
    (p,) = load_problems(str(path))
    assert target_text(p, Template.r1) == completion
    path.write_text(json.dumps({"id": "a", "problem": "2+2?", "answer": "4", "solution": "x", "target": "copy"}) + "\n")
    with pytest.raises(BadRowError, match="rows.jsonl: row 1: field 'target' must be 'verbatim'"):
        load_problems(str(path))


def test_length_grouped_batches_cover_every_example_once_with_little_padding():
    rng = random.Random(0)
    lengths = [rng.randint(10, 500) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 16, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    order = list(range(1000))
    random.Random(1).shuffle(order)
    plain = sum(len(b) * max(lengths[i] for i in b) for b in (order[i : i + 16] for i in range(0, 1000, 16)))
    assert padded < 0.7 * plain  # measured 0.53 with these lengths


def test_gradient_checkpointing_gives_the_same_weights(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    problems = load_problems("arithmetic", n=8, seed=3, levels=[1])
    weights = []
    for checkpointing in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        cfg = SFTConfig(
            examples=8,
            batch_size=4,
            micro_batch_size=2,
            lr=1e-3,
            gradient_checkpointing=checkpointing,
            group_by_length=True,
        )
        stats = run_sft(model, tok, problems, Template.r1, cfg, bf16_autocast=False, seed=0)
        assert stats.steps == 2 and stats.examples == 8
        assert not model.is_gradient_checkpointing
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])


def test_sft_data_loses_planted_overlaps_and_duplicates(tmp_path):
    m500 = load_problems("vendored:math500", n=2, seed=0)
    clean = load_problems("vendored:math_train", n=5, seed=0)
    rows = [{"id": p.id, "problem": p.problem, "answer": p.answer, "solution": p.solution} for p in clean]
    rows += [{"id": "copy-of-" + p.id, "problem": p.problem, "answer": p.answer, "solution": p.solution} for p in m500]
    rows.append({**rows[0], "id": "dup"})
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg([f"sft.source={path}", "sft.examples=100", "data.heldout_n=3"])
    kept, report = load_sft_problems(cfg, load_problems("arithmetic", n=3, seed=1, levels=[2]))
    assert sorted(p.id for p in kept) == sorted(p.id for p in clean)
    assert report["overlaps"] == 2 and report["duplicates"] == 1
    assert {i for i, _ in report["first_overlaps"]} == {"copy-of-" + p.id for p in m500}
    assert all(why == "exact match with math500" for _, why in report["first_overlaps"])


def test_reasoner_sft_raises_format_compliance_on_a_tiny_model(tiny_model_dir, tmp_path):
    # r1 targets, 64 examples, 6 epochs at a high learning rate: a random 2-layer model learns
    # to open with <think>; the job evaluates before and after and exports the model
    cfg = _cfg(
        [
            f"model.path={tiny_model_dir}",
            "rollout=hf",
            "data.template=r1",
            "data.heldout_n=8",
            "data.arithmetic_levels=[1]",
            "sft.examples=64",
            "sft.epochs=6",
            "sft.lr=3e-3",
            "sft.batch_size=8",
            "sft.terse_fraction=1.0",
            "trainer.eval_max_tokens=48",
        ]
    )
    summary = run_sft_job(cfg, tmp_path)
    base, after = summary["heldout"]["base"], summary["heldout"]["after_sft"]
    assert base["well_formed"] == 0.0 and after["well_formed"] >= 0.75  # measured 0 -> 1.0 (8 problems)
    assert summary["sft"]["examples"] == 64 and summary["data"]["kept"] == 64
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint").config.num_hidden_layers == 2


def test_tool_demonstrations_train_on_the_model_turns_with_the_real_tool_messages(smol_dir):
    """With the python tool, a demonstration is an episode: the model's turns (trained on), the
    tool message of really running the call (not trained on), end of turn; without tools the
    same problem is its step-by-step solution."""
    from reasoner.config import EnvConfig
    from reasoner.data import arithmetic
    from reasoner.envs.registry import build_environment
    from reasoner.envs.render import ToolMessages
    from reasoner.sft import build_examples

    tok = AutoTokenizer.from_pretrained(smol_dir)
    problems = arithmetic.generate(6, [5], seed=0, tool_fraction=0.5)
    env = build_environment(EnvConfig(tools=[{"name": "python", "timeout_s": 5.0}]))
    try:
        messages = ToolMessages(tok, 256)
        seqs, plens, dropped, masks = build_examples(problems, tok, Template.plain, 512, (env, messages))
    finally:
        env.close()
    assert dropped == 0 and len(seqs) == 6
    for p, seq, plen, mask in zip(problems, seqs, plens, masks):
        target = seq[plen:]
        assert "<python>" in tok.decode(seq[:plen])  # the prompt lists the tools
        if "turns" not in p.meta:
            assert mask == [1] * len(target) and "Step 1:" in tok.decode(target)
            continue
        observation = messages.ids(f"{p.answer}\n")  # what the sandbox printed
        start = mask.index(0)
        assert target[start : start + len(observation)] == observation and sum(1 - m for m in mask) == len(observation)
        assert tok.decode([t for t, m in zip(target, mask) if m]).endswith(f"\\boxed{{{p.answer}}}.<|im_end|>")
    plain, _, _, plain_masks = build_examples(problems, tok, Template.plain, 512)
    assert all(all(m) for m in plain_masks) and all("<python>" not in tok.decode(s) for s in plain)
