"""Ctrl-C and SIGTERM for long commands: one mechanism for training and evaluation.

A scheduler stops a job with SIGTERM, a person with Ctrl-C; both should end the command the same
way: what is done is kept, and the command says how to go on. Training asks to stop at its next
safe point (a checkpoint first); an evaluation stops at once, since every finished episode is
already on disk.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from rich.console import Console


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request to stop.

    With ``immediate`` the first signal raises ``KeyboardInterrupt`` at once; otherwise it sets
    ``requested`` (the signal's name), which a training loop checks once per iteration, and a second
    signal raises. Either way ``requested`` says which signal stopped the command (exit 130 for
    SIGINT, 143 for SIGTERM). Outside the main thread, where Python allows no handlers, it does
    nothing.
    """

    def __init__(self, console: Console | None = None, immediate: bool = False) -> None:
        self.requested: str | None = None
        self.console = console
        self.immediate = immediate
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.requested is None
        if first:
            self.requested = signal.Signals(signum).name
        if self.immediate or not first:
            raise KeyboardInterrupt
        if self.console is not None:
            self.console.print(
                f"[yellow]{self.requested}: stopping after this step and writing a checkpoint "
                f"(Ctrl-C again to stop at once)[/yellow]"
            )
        signal.signal(signal.SIGINT, signal.default_int_handler)

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 143 after SIGTERM (128 + the signal's number)."""
        return 143 if self.requested == "SIGTERM" else 130

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
