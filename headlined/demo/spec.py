"""What a simulated feed is: its `FeedSpec`, its record `Shape`, the matching source settings.

Real feeds that headlined polls return only their newest ~200 records with no pagination, so
anything that scrolls out of the window between two polls is gone for good. A spec fixes
everything about one such feed (rate, window, bursts, failures, record shape, seed, start);
`headlined.demo.model` turns it into records, `headlined.demo.server` serves it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NamedTuple

__all__ = ["SHAPES", "FeedSpec", "Order", "Shape", "ShapeLayout", "source_fragment"]

Order = Literal["newest_first", "oldest_first"]


class Shape(StrEnum):
    """Record and response layouts seen in real rolling-window APIs."""

    DATA = "data"
    """``{"data": [{"id": 1, "created_at": "2026-11-23T10:00:00.123Z", ...}]}``."""
    RESULT_ITEMS = "result_items"
    """``{"result": {"items": [{"station": "st-1", "seq": 7, "ts": 1700000000, ...}]}}``."""
    BARE_LIST = "bare_list"
    """``[{"uuid": "…", "time_ms": 1700000000123, ...}]``."""
    NO_TIME = "no_time"
    """``{"messages": [{"msg_id": "msg-00000001", ...}]}`` with no time field at all."""


class ShapeLayout(NamedTuple):
    """Where a shape keeps its records, which fields key them, which field is their time."""

    records: str
    key: tuple[str, ...]
    time: str | None


SHAPES: dict[Shape, ShapeLayout] = {
    Shape.DATA: ShapeLayout("data", ("id",), "created_at"),
    Shape.RESULT_ITEMS: ShapeLayout("result.items", ("station", "seq"), "ts"),
    Shape.BARE_LIST: ShapeLayout("", ("uuid",), "time_ms"),
    Shape.NO_TIME: ShapeLayout("messages", ("msg_id",), None),
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def source_fragment(shape: Shape) -> dict[str, Any]:
    """The headlined source settings matching `shape`.

    Returns ``{"records": dotted path ("" for a bare list), "key": [field, ...],
    "time": field name or None}``. Time fields differ in format per shape: ISO 8601 text
    (DATA), epoch seconds (RESULT_ITEMS), epoch milliseconds (BARE_LIST).
    """
    layout = SHAPES[shape]
    return {"records": layout.records, "key": list(layout.key), "time": layout.time}


@dataclass(frozen=True)
class FeedSpec:
    """Everything that determines one simulated feed.

    `rate` is steady records per second (0 allowed, e.g. for burst-only feeds); `burst` is
    ``(every_s, size)``: `size` extra records arrive at once every `every_s` seconds after
    `t0`. `jitter` in [0, 1] spreads each steady arrival inside its 1/rate slot (0 = evenly
    spaced at mid-slot). `error_rate` is the fraction of requests answered with HTTP 500,
    `slow_rate` the fraction delayed by `slow_s` seconds. `t0` is the epoch second at which
    the feed starts; nothing exists before it.
    """

    name: str
    rate: float
    window: int = 200
    shape: Shape = Shape.DATA
    burst: tuple[float, int] | None = None
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 1.5
    seed: int = 0
    order: Order = "newest_first"
    t0: float = 0.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        """Reject specs that would make the model meaningless."""
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"feed name {self.name!r} must match {_NAME_RE.pattern}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {self.rate!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window!r}")
        if self.burst is not None:
            every_s, size = self.burst
            if not (math.isfinite(every_s) and every_s > 0) or size < 1:
                raise ValueError(f"burst must be (every_s > 0, size >= 1), got {self.burst!r}")
        for field in ("error_rate", "slow_rate", "jitter"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must be within [0, 1], got {value!r}")
        if not (math.isfinite(self.slow_s) and self.slow_s >= 0):
            raise ValueError(f"slow_s must be a finite number >= 0, got {self.slow_s!r}")
        if self.order not in ("newest_first", "oldest_first"):
            raise ValueError(f"order must be newest_first or oldest_first, got {self.order!r}")
        if not math.isfinite(self.t0):
            raise ValueError(f"t0 must be finite, got {self.t0!r}")
