"""The first step whose loss or gradient is not finite, found without making the training step wait for the device.

Each step records on the device; the loop asks (:meth:`FirstNonFinite.check`) when it flushes the loss log and before
every checkpoint, so no checkpoint ever holds a NaN, and the one device synchronisation is the flush's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError


class NonFiniteError(UserError, FloatingPointError):
    """The loss or the gradient became NaN or infinite; nothing after the last checkpoint was saved."""


class FirstNonFinite:
    """Remembers, on the device, the first step (and its epoch) whose loss or gradient norm was not finite. Under fp16
    the grad scaler skips steps with infinite gradients by design, so there only the loss counts."""

    LOSS, GRADIENT = 1, 2

    def __init__(self, device: torch.device, fp16: bool):
        self.fp16 = fp16
        self.found = torch.zeros(3, dtype=torch.long, device=device)  # step, epoch, LOSS or GRADIENT; 0: none yet

    def record(self, loss: torch.Tensor, norm: torch.Tensor | None, step: int, epoch: int) -> None:
        """Step ``step`` (counted from 1) of epoch ``epoch`` (from 1) had this loss and gradient norm."""
        bad_loss = ~torch.isfinite(loss)
        bad = bad_loss if self.fp16 or norm is None else bad_loss | ~torch.isfinite(norm)
        first = self.found[0]
        here = torch.stack(
            [
                torch.full_like(first, step),
                torch.full_like(first, epoch),
                torch.where(bad_loss, self.LOSS, self.GRADIENT),
            ]
        )
        self.found = torch.where((first == 0) & bad, here, self.found)

    def check(self, last_checkpoint: Path | None) -> None:
        """Raise :class:`NonFiniteError` if a step was not finite (this waits for the device)."""
        step, epoch, kind = self.found.tolist()
        if step:
            last = last_checkpoint.name if last_checkpoint else "none (the run has no checkpoint yet)"
            raise NonFiniteError(
                f"the {'loss' if kind == self.LOSS else 'gradient'} became NaN or infinite at step "
                f"{step} (epoch {epoch}); stopped without saving. Last good checkpoint: {last}. Try a "
                "lower learning_rate or set grad_clip."
            )
