"""Tests for feed specs: what they reject, and the source settings each shape needs."""

from __future__ import annotations

import math
from typing import Any

import pytest

from headlined.demo.spec import FeedSpec, Shape, source_fragment


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "no/slash"}, "feed name"),
        ({"rate": -1.0}, "rate"),
        ({"rate": math.inf}, "rate"),
        ({"window": 0}, "window"),
        ({"burst": (0.0, 5)}, "burst"),
        ({"burst": (5.0, 0)}, "burst"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"slow_rate": -0.1}, "slow_rate"),
        ({"jitter": 2.0}, "jitter"),
        ({"slow_s": -1.0}, "slow_s"),
        ({"order": "sideways"}, "order"),
    ],
)
def test_spec_rejects_nonsense(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "a", "rate": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        FeedSpec(**arguments)


def test_source_fragments() -> None:
    assert source_fragment(Shape.DATA) == {"records": "data", "key": ["id"], "time": "created_at"}
    assert source_fragment(Shape.RESULT_ITEMS) == {
        "records": "result.items",
        "key": ["station", "seq"],
        "time": "ts",
    }
    assert source_fragment(Shape.BARE_LIST) == {"records": "", "key": ["uuid"], "time": "time_ms"}
    assert source_fragment(Shape.NO_TIME) == {
        "records": "messages",
        "key": ["msg_id"],
        "time": None,
    }
    source_fragment(Shape.DATA)["key"].append("mutated")
    assert source_fragment(Shape.DATA)["key"] == ["id"]
