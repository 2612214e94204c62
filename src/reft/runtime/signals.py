"""SIGTERM and SIGINT during training: finish the step, save, stop with 143 or 130.

A cluster's scheduler ends a job with SIGTERM (then SIGKILL after a grace period); Ctrl-C
sends SIGINT. While a training loop runs, ``StopSignals`` notes the first such signal and
lets the loop finish its current step, save a resumable checkpoint and raise
``Interrupted``; a second signal raises ``Interrupted`` at once (the step is abandoned, the
last checkpoint stays the last good one). The CLI prints the message on one line and
exits with the shell's status for the signal: 128 + its number.
"""

from __future__ import annotations

import signal
import sys
import threading


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal; ``exit_status`` is 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_status = 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """Catches SIGTERM and SIGINT between ``install`` and ``restore`` (main thread only).

    ``on_second(signum)`` returns the message of the ``Interrupted`` raised by a second
    signal."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, on_second):
        self.received: int | None = None
        self._old: dict[int, object] = {}
        self._on_second = on_second

    def install(self) -> None:
        if self._old or threading.current_thread() is not threading.main_thread():
            return
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            self.restore()
            raise Interrupted(signum, self._on_second(signum))
        self.received = signum
        print(f"\n{signal_name(signum)} received: finishing this step, then saving a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)
