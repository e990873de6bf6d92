"""A process of its own that publishes to the lake or reads from it, for the cross-process
tests (so that kill -9 is real and commits really race).

Run as ``python -m tests.lake.runner COMMAND SETTINGS.json [options]`` from the repository.
SETTINGS.json holds the fields of `headlined.lake.publisher.LakeSettings` (paths as strings,
``s3`` as the fields of `LakeS3Config` or null). Lines meant for the test start with
``RUNNER `` on stdout (headlined's own log lines go there too):

- ``publish --cycles N``: ``RUNNER ready`` once the publisher is built, then one
  ``RUNNER result {json}`` per `Publisher.cycle()`.
- ``produce --tree DIR --rounds N --sources A,B --seed S [--go FILE]``: each round writes new
  local files into the tree (a messages flush and a measurement chunk, as headlined does) and
  then cycles, like a daemon that polls and publishes at once; with ``--go``, the rounds wait
  for FILE to exist, so that two runners begin together.
- ``read --table NS.NAME --out FILE --stop FILE``: loads the table afresh and scans it again
  and again, appending each scan's snapshot and rows to FILE (JSON lines), until FILE
  ``--stop`` exists. Reads with pyiceberg alone, as any Iceberg client would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog

from headlined.config import LakeS3Config

MEASUREMENT = ("sensors", "autogen", "air")
PREFIX = "RUNNER "


def say(what: str, data: object = None) -> None:
    """One line for the test on stdout, flushed at once (the process may be killed next)."""
    text = PREFIX + what + ("" if data is None else " " + json.dumps(data))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def reader_catalog(settings: dict[str, Any]) -> SqlCatalog:
    """The lake's catalog opened the way any Iceberg client does: `type=sql`, name
    ``headlined``, the same URL and warehouse (and S3 properties)."""
    warehouse = str(settings["warehouse"])
    properties = {
        "uri": settings["catalog_url"],
        "warehouse": warehouse if "://" in warehouse else Path(warehouse).as_uri(),
    }
    s3 = settings.get("s3")
    if s3 is not None:
        properties |= {
            "s3.endpoint": s3["endpoint"],
            "s3.region": s3["region"],
            "s3.access-key-id": s3["access_key_id"],
            "s3.secret-access-key": s3["secret_access_key"],
        }
    return SqlCatalog("headlined", **properties)


def _publisher(settings: dict[str, Any]) -> Any:
    # Imported here: `read` reads as any Iceberg client does, without headlined's lake code.
    from headlined.lake.publisher import LakeSettings, Publisher  # noqa: PLC0415

    def path(key: str) -> Path | None:
        value = settings.get(key)
        return None if value is None else Path(value)

    s3 = settings.get("s3")
    work_dir = path("work_dir")
    assert work_dir is not None
    return Publisher(
        LakeSettings(
            catalog_url=settings["catalog_url"],
            warehouse=settings["warehouse"],
            s3=None if s3 is None else LakeS3Config(**s3),
            site=settings["site"],
            messages_dir=path("messages_dir"),
            influx_dir=path("influx_dir"),
            work_dir=work_dir,
        )
    )


def _cycle(publisher: Any) -> dict[str, Any]:
    result = publisher.cycle()
    return {
        "added": result.added,
        "removed": result.removed,
        "waiting": result.waiting,
        "snapshots": result.snapshots,
        "errors": result.errors,
    }


def publish(settings: dict[str, Any], cycles: int) -> None:
    """Cycle `cycles` times, saying each result."""
    publisher = _publisher(settings)
    say("ready")
    try:
        for _ in range(cycles):
            say("result", _cycle(publisher))
    finally:
        publisher.close()


def produce(
    settings: dict[str, Any],
    *,
    tree: Path,
    rounds: int,
    sources: list[str],
    seed: int,
    go: Path | None,
) -> None:
    """Each round: new local files (messages and a chunk), then a cycle. With `go`, the
    rounds begin once that file exists, so that several runners start together."""
    from tests.lake.local_files import DAY_NS, RECENT_NS, Tree  # noqa: PLC0415  only this command

    local = Tree(tree)
    publisher = _publisher(settings)
    say("ready")
    deadline = time.monotonic() + 120
    while go is not None and not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{go} did not appear in 120 s")
        time.sleep(0.01)
    try:
        for n in range(rounds):
            local.add_messages(sources, days=2, per_day=3, seed=seed * 1000 + n)
            # Each site's chunks cover other days, as two daemons exporting other databases'
            # history into one table would not collide on time either.
            start = RECENT_NS + (seed * 100 + n) * DAY_NS
            local.write_chunk(MEASUREMENT, start, 10 + n)
            say("result", _cycle(publisher))
    finally:
        publisher.close()


def read(settings: dict[str, Any], table: str, out: Path, stop: Path) -> None:
    """Scan `table` afresh until `stop` exists; each scan's rows appended to `out`."""
    catalog = reader_catalog(settings)
    namespace, name = table.split(".", 1)
    with out.open("a", encoding="utf-8") as sink:
        while not stop.exists():
            loaded = catalog.load_table((namespace, name))
            snapshot = loaded.current_snapshot()
            scanned = loaded.scan(selected_fields=("time_ns", "station", "count")).to_arrow()
            rows = sorted(
                zip(
                    scanned["time_ns"].to_pylist(),
                    scanned["station"].to_pylist(),
                    scanned["count"].to_pylist(),
                    strict=True,
                )
            )
            record = {"snapshot": None if snapshot is None else snapshot.snapshot_id, "rows": rows}
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            say("scanned", {"rows": len(rows)})
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m tests.lake.runner")
    parser.add_argument("command", choices=["publish", "produce", "read"])
    parser.add_argument("settings", type=Path)
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument("--tree", type=Path)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sources", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--go", type=Path)
    parser.add_argument("--table")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stop", type=Path)
    args = parser.parse_args(argv)
    settings = json.loads(args.settings.read_text(encoding="utf-8"))
    if args.command == "publish":
        publish(settings, args.cycles)
    elif args.command == "produce":
        produce(
            settings,
            tree=args.tree,
            rounds=args.rounds,
            sources=args.sources.split(","),
            seed=args.seed,
            go=args.go,
        )
    else:
        read(settings, args.table, args.out, args.stop)


if __name__ == "__main__":
    main()
