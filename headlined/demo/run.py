"""`headlined demo-feed`: a few friendly simulated feeds, served until Ctrl-C."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from headlined import logs
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape, source_fragment

__all__ = ["default_specs", "run_demo"]

log = logs.get("demofeed")

# When the default feeds began: fixed, not the feed process's start, so that a feed started
# again (a second `scripts/demo`) goes on with the records it would have had by now, as a
# real API does, instead of serving again the ids that the state already holds.
DEMO_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def default_specs(t0: float | None = None) -> list[FeedSpec]:
    """Friendly demo feeds: ``a`` (DATA, 2/s), ``b`` (RESULT_ITEMS, 0.5/s), ``c`` (rough).

    ``c`` is a bare list, oldest first, with a burst of 150 records every minute and a few
    failed or slow responses, to show headlined coping. `t0` defaults to DEMO_EPOCH, so the
    first poll already finds a full window.
    """
    start = DEMO_EPOCH if t0 is None else t0
    return [
        FeedSpec("a", rate=2.0, shape=Shape.DATA, seed=1, t0=start),
        FeedSpec("b", rate=0.5, shape=Shape.RESULT_ITEMS, seed=2, t0=start),
        FeedSpec(
            "c",
            rate=1.0,
            shape=Shape.BARE_LIST,
            burst=(60.0, 150),
            error_rate=0.02,
            slow_rate=0.02,
            slow_s=1.5,
            seed=3,
            order="oldest_first",
            t0=start,
        ),
    ]


def run_demo(
    port: int = 8787,
    specs: Sequence[FeedSpec] | None = None,
    *,
    host: str = "127.0.0.1",
    stop: threading.Event | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve demo feeds (default: `default_specs()`) until Ctrl-C or `stop` is set.

    Prints the feed URLs and their matching source settings to `out` (default stdout).
    Returns normally on KeyboardInterrupt, after the server has stopped.
    """
    # This is the whole process of `headlined demo-feed`: log at info, so the per-request
    # debug lines stay quiet and only failures show.
    logs.configure("info")
    stream = sys.stdout if out is None else out
    stop_event = threading.Event() if stop is None else stop
    feeds = default_specs() if specs is None else specs
    with DemoFeedServer(feeds, host=host, port=port) as srv:
        print(f"demo feeds at {srv.base_url}/feeds (Ctrl-C to stop)", file=stream)
        for spec in feeds:
            fragment = source_fragment(spec.shape)
            print(
                f"  {srv.url_for(spec.name)}  {spec.rate:g} records/s, window {spec.window};"
                f" records {fragment['records']!r}, key {fragment['key']},"
                f" time {fragment['time']!r}",
                file=stream,
                flush=True,
            )
        try:
            stop_event.wait()
        except KeyboardInterrupt:
            log.debug("demo_feed_interrupted")
