"""`headlined demo-feed`: a few friendly simulated feeds, served until Ctrl-C."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from headlined import logs
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape, source_fragment

__all__ = ["default_specs", "run_demo"]

log = logs.get("demofeed")

_PREFILL_S = 60.0


def default_specs(t0: float | None = None) -> list[FeedSpec]:
    """Friendly demo feeds: ``a`` (DATA, 2/s), ``b`` (RESULT_ITEMS, 0.5/s), ``c`` (rough).

    ``c`` is a bare list, oldest first, with a burst of 150 records every minute and a few
    failed or slow responses, to show headlined coping. `t0` defaults to a minute ago so the
    first poll already finds records.
    """
    start = time.time() - _PREFILL_S if t0 is None else t0
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
