"""transformers ``generate`` rollout backend: the slow, simple reference for `VLLMEngine`.

Keeps its own fp32 copy of the model; ``load_weights`` copies the learner's tensors into it.
Sampler log-probs are log softmax of the raw logits divided by the temperature (top-p is
applied to sampling, not to the reported log-probs, as vLLM does). They are taken step by step
(`ChosenTokenLogprobs`), so generation holds one step's (B*n, V) distribution, not the
(B*n, T, V) logits of ``output_logits`` (6.4 GB in fp32 for 128 completions of 256 tokens with
SmolLM2's 49,152-token vocabulary).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from transformers import AutoTokenizer, LogitsProcessor, LogitsProcessorList

from reasoner.models import load_policy
from reasoner.rollout.base import budgets
from reasoner.rollout.weight_receiver import WeightReceiver
from reasoner.types import Completion


class ChosenTokenLogprobs(LogitsProcessor):
    """Records log softmax(raw logits / `temperature`) of each token ``generate`` draws.

    Placed first in the processor list (``generate`` runs user processors before its
    temperature and top-p warpers), it sees each step's raw logits (B*n, V), keeps their log
    softmax until the next call, whose ``input_ids`` end with the token drawn from them, and then
    only that token's log-prob. `finish` takes the last step's from the final sequences.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.pending: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def _settle(self, input_ids: torch.Tensor) -> None:
        if self.pending is not None:
            self.steps.append(self.pending.gather(-1, input_ids[:, -1:]).squeeze(-1))
            self.pending = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._settle(input_ids)
        self.pending = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """Log-probs of the drawn tokens, (B*n, T) for T generation steps (nats)."""
        self._settle(sequences)
        return torch.stack(self.steps, dim=1)


class HFEngine(WeightReceiver):
    """`RolloutEngine` on ``transformers`` ``generate``, on the first GPU when torch sees one, else
    the CPU (`reasoner.models.train_device` ``auto``); one member of a weight-update group
    (`reasoner.rollout.weight_receiver`)."""

    dtype = torch.float32
    #: members of a weight-update group this engine takes (one process)
    weight_members = 1

    def __init__(self, model_path: str, seed: int) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = load_policy(model_path).eval()
        self.generator_seed = seed

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        caps = budgets(max_tokens, len(prompt_ids))
        width = max(len(p) for p in prompt_ids)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=self.model.device)
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids], device=self.model.device)
        sample = temperature > 0
        record = ChosenTokenLogprobs(temperature if sample else 1.0)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=attn,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=top_p if sample else None,
                top_k=0 if sample else None,
                max_new_tokens=max(caps),
                num_return_sequences=n,
                logits_processor=LogitsProcessorList([record]),
                return_dict_in_generate=True,
                pad_token_id=pad,
                eos_token_id=eos,
                stop_strings=list(stop) or None,
                tokenizer=self.tokenizer if stop else None,
            )
        new = out.sequences[:, width:]  # (B*n, T)
        lp = record.finish(out.sequences)  # (B*n, T)
        batch: list[list[Completion]] = []
        for row in range(new.shape[0]):
            toks = new[row].tolist()[: caps[row // n]]
            # the first of: EOS (kept), the token completing a stop string (kept; the row is padded
            # with EOS after it, which is not part of it), the prompt's budget
            end = toks.index(eos) + 1 if eos in toks else len(toks)
            stop_at = self._stop_end(toks[:end], stop)
            end = min(end, stop_at)
            toks = toks[:end]
            ended = bool(toks) and (toks[-1] == eos or stop_at == end)
            comp = Completion(
                toks,
                self.tokenizer.decode(toks, skip_special_tokens=True),
                lp[row, :end].tolist(),
                "stop" if ended else "length",
            )
            if row % n == 0:
                batch.append([])
            batch[-1].append(comp)
        return batch

    def _stop_end(self, toks: list[int], stop: Sequence[str]) -> int:
        """The length of the shortest prefix of `toks` whose text contains one of `stop`
        (``len(toks) + 1`` when none does): a binary search, as containment only grows."""
        decode = lambda k: self.tokenizer.decode(toks[:k], skip_special_tokens=True)  # noqa: E731
        if not stop or not any(s in decode(len(toks)) for s in stop):
            return len(toks) + 1
        lo, hi = 1, len(toks)
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s in decode(mid) for s in stop):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = self.model.state_dict(keep_vars=True)  # tied weights appear under both names
        with torch.no_grad():
            for name, t in named_tensors:
                params[name].copy_(t)

    def _member_offset(self) -> int:
        return 0

    def _load_received(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.load_weights(weights)

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        from reasoner.logprobs import completion_logprobs, pad_batch

        with torch.no_grad():
            lp, _ = completion_logprobs(self.model, pad_batch([token_ids], [prompt_len], 0))
        return lp[0, prompt_len - 1 :].tolist()
