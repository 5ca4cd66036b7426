"""A progress bar on stderr that stays silent when stderr is not a terminal (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`Progress(total, label)`; call `advance(n)`; `close()` ends the line."""

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.done = 0
        self.start = time.monotonic()
        self.last_draw = 0.0

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        now = time.monotonic()
        if self.enabled and (now - self.last_draw > 0.1 or self.done == self.total):
            self.last_draw = now
            width = 30
            filled = int(width * self.done / self.total)
            elapsed = now - self.start
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} {elapsed:5.1f}s"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
