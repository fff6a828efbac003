"""Ctrl-C and SIGTERM during training: finish the step, save, then stop."""

from __future__ import annotations

import signal
import threading
from typing import Callable


class StopRequests:
    """First SIGINT/SIGTERM: ask the loop to stop after the current step; a second SIGINT: stop now.

    SIGTERM is what schedulers and torchrun send; the loop checks ``requested``
    after every step (agreed across ranks) and writes ``last`` before it stops.
    """

    def __init__(self, log: Callable[[str], None]):
        self.requested = False
        self.log = log
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.log("stopping after this step to save a resumable checkpoint (Ctrl-C again to quit without saving)")

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)
