"""Does a source's configured ``window`` match what its API really returns? (pure: no I/O)

Gap detection can only call a poll a gap when its response is a full window, and the
schedule sizes its intervals by the window, so a wrong ``window`` fails quietly:

- set larger than the API's real window, no response is ever full and **no gap can ever be
  detected**: the one failure this daemon exists to report;
- set smaller, the schedule polls more often than it needs to (nothing is lost).

The API's real window shows itself: when new records keep arriving and yet response after
response holds the same number of records, the API drops its oldest at that size. Below
``window``, the poller then uses the observed size for gap detection and scheduling (so loss
is prevented where it can be, and recorded where it cannot) and says so; above it, it only
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

STEADY_POLLS = 10  # equal-sized responses with new records before the window is judged


@dataclass(frozen=True, slots=True)
class Advice:
    """A ``window`` setting the responses contradict, and what to do about it."""

    kind: Literal["too_small", "too_large"]
    configured: int
    observed: int

    @property
    def effect(self) -> str:
        """What the wrong setting costs."""
        if self.kind == "too_large":
            return (
                "no response would be a full window, so no gap could be detected: "
                f"using window {self.observed} until the config says otherwise"
            )
        return "polls come more often than this API needs"

    @property
    def action(self) -> str:
        """The fix, in the user's terms."""
        return f"set window: {self.observed} for this source"


class WindowCheck:
    """Watches response sizes of one source; gives each kind of advice at most once."""

    def __init__(self, window: int, steady_polls: int = STEADY_POLLS) -> None:
        self._window = window
        self._steady_polls = steady_polls
        self._size: int | None = None  # the size of the current run of equal responses
        self._run = 0
        self._given: set[str] = set()

    def observe(self, fetched: int, new: int) -> Advice | None:
        """Record one successful poll: how many records it fetched and how many were new."""
        if new == 0:
            return None  # a quiet poll neither proves nor breaks a run
        if fetched == self._size:
            self._run += 1
        else:
            self._size, self._run = fetched, 1
        if self._run < self._steady_polls or fetched == self._window:
            return None
        kind: Literal["too_small", "too_large"] = (
            "too_large" if fetched < self._window else "too_small"
        )
        if kind in self._given:
            return None
        self._given.add(kind)
        return Advice(kind, self._window, fetched)
