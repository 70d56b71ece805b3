"""Live progress: a tqdm bar where a person watches a terminal, plain lines with elapsed time and an
ETA elsewhere (CI logs, pipes). Engines' announcements (compiles) print as their own lines."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress", "fmt_duration"]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """``start(total, done)``, then ``advance(label, status)`` per finished run, ``note(text)`` for an
    announcement, ``close()``. ``live=None`` picks the bar on a terminal, lines elsewhere."""

    def __init__(self, name: str, *, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.name = name
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.total = 0
        self.done = 0
        self.ran = 0
        self.t0 = time.monotonic()
        self._bar: tqdm | None = None

    def say(self, text: str) -> None:
        """A line of its own (above the bar when there is one)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.ran = total, done, 0
        self.t0 = time.monotonic()
        if self.live:
            self._bar = tqdm(total=total, initial=done, desc=self.name, file=self.stream, dynamic_ncols=True,
                             unit="run", bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining} {postfix}")

    def eta(self) -> float | None:
        if self.ran == 0:
            return None
        per_run = (time.monotonic() - self.t0) / self.ran
        return per_run * (self.total - self.done)

    def advance(self, label: str, status: str) -> None:
        self.done += 1
        self.ran += 1
        elapsed = time.monotonic() - self.t0
        if self._bar is not None:
            self._bar.set_postfix_str(f"{label}: {status}"[:60], refresh=False)
            self._bar.update(1)
            if status != "ok":
                self._bar.write(f"  {label}: {status}", file=self.stream)
        else:
            self.stream.write(f"[{self.done}/{self.total}] {fmt_duration(elapsed)} elapsed, "
                              f"ETA {fmt_duration(self.eta())} · {label}: {status}\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
