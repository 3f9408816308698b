"""t2i.objectives: what a training step minimises (null-prompt dropout)."""

from __future__ import annotations

import torch

from t2i import objectives
from t2i.sampling import training_scheduler


def test_null_prompt_dropout_rate(smoke_cfg, caption_table):
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x_t, t, encoder_hidden_states):
            seen.append(encoder_hidden_states)
            return type("Out", (), {"sample": x_t * 0})()

    objective = objectives.EpsilonObjective(training_scheduler(smoke_cfg), caption_table, p_uncond=0.25)
    x0 = torch.zeros(4000, 1, 4, 4)
    objective(Spy(), (x0, torch.zeros(4000, dtype=torch.long)), torch.Generator().manual_seed(0))
    is_null = (seen[0] == caption_table.null).flatten(1).all(1)
    assert 0.22 < is_null.float().mean().item() < 0.28
