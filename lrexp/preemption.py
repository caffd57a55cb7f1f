"""Stop requests from the outside world: SLURM preemption, submitit requeue, ``kill``, Ctrl-C.

The handler only records the signal; the training loop checks it between steps, writes a checkpoint and
then calls ``exit()``, which hands over to whatever handler was installed before (submitit's requeue,
for instance) or exits with the conventional 128 + signal number. A second Ctrl-C stops at once.

What the previous handler raises is the launcher's own way of ending the job (submitit raises
UncompletedJobError when it will not requeue, so that its result file says the job is over): it goes up
wrapped in HandedOver, which the entry point unwraps and lets through, untouched and unrecorded.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

# SIGTERM: SLURM preemption / `kill`. SIGUSR1 and SIGUSR2: the "time is nearly up" signals that SLURM
# sends when asked (submitit's default is SIGUSR2). SIGINT: Ctrl-C.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT") if hasattr(signal, name))


class HandedOver(Exception):
    """The previous handler of a stop signal raised ``error``: not lrexp's failure, the launcher's exit."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals can only be set there
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        # Handlers go back; the record of them stays, for exit() to hand over to.
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: do not wait for the step to finish
        self.signum = signum

    def exit(self) -> None:
        """After the checkpoint: let the previous handler act (submitit requeues), else exit 128+N."""
        signum = self.signum
        assert signum is not None, "exit() is for after a stop signal arrived"
        previous = self._previous.get(signum)
        self.__exit__()
        if callable(previous) and previous is not signal.default_int_handler:
            try:
                previous(signum, None)  # submitit's requeue handler exits the process itself
            except Exception as e:
                raise HandedOver(e) from e
        raise SystemExit(128 + signum)
