"""The PPO critic: a value head on a copy of the policy's transformer backbone."""

from __future__ import annotations

import copy

import torch

from reasoner.logprobs import PaddedBatch, module_device


class ValueModel(torch.nn.Module):
    """V(state) for every completion position: a deep copy of the policy's decoder (so the critic
    starts from the same features) and a zero-initialized linear head (so V starts at 0).

    Args:
        policy: a transformers causal LM (``get_decoder()``, ``config.hidden_size``).
    """

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(policy.get_decoder())
        self.head = torch.nn.Linear(policy.config.hidden_size, 1, device=module_device(policy))
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        """Values aligned with `completion_logprobs`: position t holds V of the state before
        target token t+1. Returns (n, L-1) float32 on `batch`'s device (the model runs on its own,
        as `reasoner.logprobs.completion_logprobs`), zero where ``target_mask`` is False; the head
        runs on completion positions only."""
        home, batch = batch.input_ids.device, batch.to(module_device(self))
        hidden = self.backbone(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
        ).last_hidden_state
        mask = batch.target_mask
        values = mask.new_zeros(mask.shape, dtype=torch.float32)
        values[mask] = self.head(hidden[:, :-1][mask]).squeeze(-1).float()
        return values.to(home)
