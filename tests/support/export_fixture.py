"""A real influxd filled the way the export must cope with, and what Parquet must then hold.

Three databases (one with a Thai name), two retention policies, five weekly shards, part of
the data in TSM and part still in the WAL, overwritten points (the WAL's value wins), strings
with quotes, commas, spaces, backslashes and Thai, and a field whose type differs between
shards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import yaml

from tests.support.influxdb_server import InfluxServer

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z, a Monday
HOUR = 3600 * 10**9
DAY = 24 * HOUR

Value = float | int | bool | str
Points = dict[tuple[tuple[tuple[str, str], ...], int], dict[str, Value]]
Expected = dict[tuple[str, str, str], Points]

NOTES = [
    "plain",
    'with "quotes"',
    "comma, and space",
    "back\\slash",
    "ทดสอบ ภาษาไทย",
    'all: "ก", \\ ,=',
]


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Fixture:
    """Writes points to influxd and remembers what the latest value of each is."""

    def __init__(self, influx: InfluxServer) -> None:
        self.influx = influx
        self.expected: Expected = {}

    def write(
        self,
        where: tuple[str, str, str],
        tags: dict[str, str],
        time: int,
        fields: dict[str, Value],
    ) -> str:
        """A line for ``where`` = (database, retention policy, measurement); remembered."""
        measurement = where[2]
        tag_text = "".join(f",{k}={_escape_tag(v)}" for k, v in sorted(tags.items()))
        field_text = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
        point = self.expected.setdefault(where, {}).setdefault(
            (tuple(sorted(tags.items())), time), {}
        )
        point.update(fields)
        return f"{measurement}{tag_text} {field_text} {time}"

    def send(self, db: str, rp: str, lines: list[str]) -> None:
        self.influx.write(db, lines, rp=None if rp == "autogen" else rp)


def build(influx: InfluxServer) -> Fixture:
    """Fill ``influx``; returns the fixture holding the expected result."""
    fx = Fixture(influx)
    for db in ("sensors", "weather", "ข่าว"):
        influx.create_database(db)
    influx.create_retention_policy("sensors", "archive", "INF")

    def sensors(start_day: int, days: int) -> list[str]:
        lines = []
        for step in range(days * 4):
            t = BASE + start_day * DAY + step * 6 * HOUR
            for n, station in enumerate(("st-1", "st 2", "st,3")):
                lines.append(
                    fx.write(
                        ("sensors", "autogen", "pm"),
                        {"id": station, "model": "v2 x"},
                        t,
                        {
                            "pm10": 10.5 + step + n,
                            "pm25": step / 3,
                            "count": step * 1000 + n,
                            "ok": step % 2 == 0,
                            "note": NOTES[step % len(NOTES)],
                        },
                    )
                )
        return lines

    fx.send("sensors", "autogen", sensors(0, 28))  # four weekly shards
    fx.send(
        "sensors",
        "archive",
        [
            fx.write(
                ("sensors", "archive", "pm"),
                {"id": "old"},
                BASE - 10 * DAY + i * HOUR,
                {"pm10": float(i)},
            )
            for i in range(24)
        ],
    )
    fx.send(
        "weather",
        "autogen",
        [
            fx.write(
                ("weather", "autogen", "temp"),
                {"station": "bkk"},
                BASE + i * HOUR,
                {"reading": 30.5 + i},
            )
            for i in range(48)
        ],
    )
    fx.send(
        "ข่าว",
        "autogen",
        [
            fx.write(
                ("ข่าว", "autogen", "ข้อความ"),
                {"ช่อง": "หนึ่ง"},
                BASE + i * DAY,
                {"text": NOTES[i % len(NOTES)], "n": i},
            )
            for i in range(20)
        ],
    )
    for db in ("sensors", "weather", "ข่าว"):
        influx.flush_to_tsm(db)
    influx.flush_to_tsm("sensors", "archive")
    # Still in the WAL: a fifth week, overwrites of TSM points, and the field type change.
    wal = sensors(28, 7)
    wal += [
        fx.write(
            ("sensors", "autogen", "pm"),
            {"id": "st-1", "model": "v2 x"},
            BASE + 8 * DAY + step * 6 * HOUR,
            {"pm10": -1.25, "note": "overwritten"},
        )
        for step in range(4)
    ]
    fx.send("sensors", "autogen", wal)
    fx.send(
        "weather",
        "autogen",
        [
            fx.write(
                ("weather", "autogen", "temp"),
                {"station": "bkk"},
                BASE + 15 * DAY + i * HOUR,
                {"reading": 20 + i},
            )
            for i in range(24)
        ],
    )  # integer now, another shard
    return fx


def read_dataset(out: Path) -> Expected:
    """Every point in the exported Parquet, per file, mapped back to tags and fields."""
    found: Expected = {}
    conn = duckdb.connect()
    for path in sorted(out.glob("*/*/*/*.parquet")):
        db, rp, measurement = (p.name for p in (path.parents[2], path.parents[1], path.parent))
        from urllib.parse import unquote  # noqa: PLC0415  only the test helper needs it

        key = (unquote(db), unquote(rp), unquote(measurement))
        described = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
        types = {row[0]: row[1] for row in described}
        assert types.pop("time") == "TIMESTAMPTZ_NS", path  # marked UTC
        rows = conn.execute(
            f"SELECT epoch_ns(time), * EXCLUDE (time) FROM read_parquet('{path}')"
        ).fetchall()
        names = list(types)
        points = found.setdefault(key, {})
        for row in rows:
            time, values = row[0], dict(zip(names, row[1:], strict=True))
            tags = tuple(
                sorted(
                    (k, v)
                    for k, v in values.items()
                    if types[k] == "VARCHAR" and k in _TAG_KEYS and v is not None
                )
            )
            fields = {
                k: v
                for k, v in values.items()
                if v is not None and not (types[k] == "VARCHAR" and k in _TAG_KEYS)
            }
            assert (tags, time) not in points, f"point twice: {key} {tags} {time}"
            points[(tags, time)] = fields
    return found


_TAG_KEYS = {"id", "model", "station", "ช่อง"}


def normalise(expected: Expected) -> dict[str, Any]:
    """A comparable, printable form (JSON keys are strings)."""
    return {
        json.dumps(k, ensure_ascii=False): {
            json.dumps(p, ensure_ascii=False): v for p, v in sorted(points.items())
        }
        for k, points in sorted(expected.items())
    }


def export(config: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``headlined export -c CONFIG`` as a user runs it; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "headlined", "export", "-c", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def export_config(
    root: Path,
    data_dir: Path,
    wal_dir: Path,
    *,
    output: str = "out",
    log_level: str = "info",
    **influx: Any,
) -> Path:
    """``root/headlined.yaml``: state under ``root``, exporting ``data_dir``/``wal_dir`` with
    headlined's own reader (no inspect socket: the test's user reads the files) into
    ``root/<output>``, plus the ``influx`` settings given."""
    config = {
        "state_dir": str(root / "state"),
        "log_level": log_level,
        "influx": {
            "data_dir": str(data_dir),
            "wal_dir": str(wal_dir),
            "inspect_socket": None,
            "output_dir": str(root / output),
            **influx,
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "headlined.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path
