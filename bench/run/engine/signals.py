"""SIGTERM and SIGINT: stop at a step boundary, save a checkpoint, record the cell as `interrupted`.

Lightning does the stopping: its SignalConnector sets ``trainer.received_sigterm`` on SIGTERM and the
training loop raises ``SIGTERMException`` at the end of the current batch (and evaluation loops
between batches). We add three things: SIGINT takes the same path (the handler re-sends SIGTERM to
this process instead of raising KeyboardInterrupt mid-step; a second Ctrl-C raises at once), the
first signal received is remembered for the exit status (128 + signum, as shells use), and
``checkpoints.PeriodicCheckpoint`` writes a checkpoint before the loop unwinds."""

from __future__ import annotations

import os
import signal

import lightning as L

from ...errors import Interrupted  # noqa: F401 - raised by run_matrix, re-exported here


class StopRequest:
    """Installs SIGTERM/SIGINT handlers for the duration of a ``with`` block; ``signum`` is the first
    signal received (None if none)."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def _handler(self, signum, frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if self.signum is None:
            self.signum = signum
        if signum == signal.SIGINT:  # Lightning listens for SIGTERM only: take its path
            os.kill(os.getpid(), signal.SIGTERM)

    def __enter__(self) -> "StopRequest":
        for s in (signal.SIGTERM, signal.SIGINT):
            self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


class RelayEarlySignal(L.Callback):
    """Lightning resets ``received_sigterm`` when fit starts: a signal that came while the cell was
    being set up is sent again once fit's own handler is in place (a Lightning callback hook)."""

    def __init__(self, stop: StopRequest | None):
        self.stop = stop

    def on_train_start(self, trainer, pl_module):
        if self.stop is not None and self.stop.signum and not trainer.received_sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
