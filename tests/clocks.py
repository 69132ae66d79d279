"""A clock tests move by hand (time is injected, never slept)."""

from __future__ import annotations


class Clock:
    """A wall clock (unix seconds) that tests move by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
