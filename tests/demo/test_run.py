"""Tests for ``headlined demo-feed``: the default feeds and the banner."""

from __future__ import annotations

import io
import threading
import time

import pytest

from headlined.demo.model import FeedModel
from headlined.demo.run import default_specs, run_demo
from headlined.demo.spec import Shape

T0 = 1_700_000_000.0


def test_default_specs() -> None:
    specs = default_specs(t0=T0)
    assert [(s.name, s.shape, s.rate) for s in specs[:2]] == [
        ("a", Shape.DATA, 2.0),
        ("b", Shape.RESULT_ITEMS, 0.5),
    ]
    assert all(s.t0 == T0 for s in specs)


def test_a_default_feed_started_again_goes_on_with_new_records() -> None:
    """A first poll finds a full window, and a feed process started again (a second
    scripts/demo) serves the records it would have by now, not the ids of the last run."""
    now = time.time()
    first_run = FeedModel(default_specs()[0])
    window = first_run.window_at(now)
    assert len(window) == 200
    restarted = FeedModel(default_specs()[0])  # built later, as a new process would
    later = restarted.window_at(now + 600)  # 1,200 records later: a window of new ones
    assert min(r["id"] for r in later) > max(r["id"] for r in window)
    assert restarted.window_at(now) == window


@pytest.mark.integration
def test_run_demo_prints_feeds_and_returns_when_stopped() -> None:
    stop = threading.Event()
    stop.set()
    out = io.StringIO()
    run_demo(0, default_specs(t0=T0), stop=stop, out=out)
    banner = out.getvalue()
    assert "/feeds/a " in banner
    assert "records 'result.items', key ['station', 'seq']" in banner
