"""transformers ``generate`` rollout backend: the slow, simple reference for `VLLMEngine`.

Keeps its own fp32 copy of the model; ``load_weights`` copies the learner's tensors into it.
Sampler log-probs are log softmax of the raw logits divided by the temperature (top-p is
applied to sampling, not to the reported log-probs, as vLLM does).
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasoner.types import Completion


class HFEngine:
    """`RolloutEngine` on ``transformers`` ``generate``."""

    dtype = torch.float32

    def __init__(self, model_path: str, seed: int) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        self.generator_seed = seed

    def generate(
        self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float, max_tokens: int
    ) -> list[list[Completion]]:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        width = max(len(p) for p in prompt_ids)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        sample = temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=attn,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=top_p if sample else None,
                top_k=0 if sample else None,
                max_new_tokens=max_tokens,
                num_return_sequences=n,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad,
                eos_token_id=eos,
            )
        new = out.sequences[:, width:]  # (B*n, T)
        logits = torch.stack(out.logits, dim=1).float()  # (B*n, T, V)
        lp = torch.log_softmax(logits / (temperature if sample else 1.0), dim=-1).gather(-1, new[..., None]).squeeze(-1)
        batch: list[list[Completion]] = []
        for row in range(new.shape[0]):
            toks = new[row].tolist()
            stop = toks.index(eos) + 1 if eos in toks else len(toks)
            toks = toks[:stop]
            reason = "stop" if toks and toks[-1] == eos else "length"
            comp = Completion(toks, self.tokenizer.decode(toks, skip_special_tokens=True), lp[row, :stop].tolist(), reason)
            if row % n == 0:
                batch.append([])
            batch[-1].append(comp)
        return batch

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = self.model.state_dict(keep_vars=True)  # tied weights appear under both names
        with torch.no_grad():
            for name, t in named_tensors:
                params[name].copy_(t)

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        from reasoner.logprobs import completion_logprobs, pad_batch

        with torch.no_grad():
            lp, _ = completion_logprobs(self.model, pad_batch([token_ids], [prompt_len], 0))
        return lp[0, prompt_len - 1 :].tolist()
