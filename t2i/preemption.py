"""Preemption: turn SIGTERM / SIGUSR1 into "checkpoint at the next step boundary, then stop".

SLURM sends SIGUSR1 shortly before a time limit (``--signal=USR1@120``) and SIGTERM on preemption or ``scancel``.
The trainer checks :attr:`PreemptionFlag.requested` after every optimizer step, writes a checkpoint and raises
:class:`Preempted`; the command line exits with :data:`REQUEUE_EXIT_CODE`, and ``slurm/*.sbatch`` requeue the job,
which resumes from that checkpoint.
"""

from __future__ import annotations

import signal
import threading

REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
MARKER = "PREEMPTED"  # written into the run folder, for wrappers (papermill) that cannot pass an exit code through


class Preempted(Exception):
    """Training stopped on a signal after writing a checkpoint; resume by running the same command again."""

    def __init__(self, signal_name: str, checkpoint):
        super().__init__(f"stopped on {signal_name} after writing checkpoint {checkpoint}; run again to resume")
        self.signal_name, self.checkpoint = signal_name, checkpoint


class PreemptionFlag:
    """Context manager: while active, SIGTERM and SIGUSR1 only set a flag. Outside the main thread (where Python
    cannot install handlers) it is inert and says so."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "PreemptionFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
