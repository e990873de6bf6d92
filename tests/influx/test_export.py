"""``headlined export`` against a real influxd and influx_inspect: exactly once, resumable."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from headlined.influx.convert import path_segment
from tests.support.daemon_process import Daemon
from tests.support.export_fixture import Fixture, build, export, normalise, read_dataset
from tests.support.influxdb_server import InfluxServer, require_binary, running_influxd

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLED = 3  # chunks whose first influx_inspect is killed


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, Fixture]]:
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path_factory.mktemp("influx")) as influx:
        yield influx, build(influx)


def write_config(
    tmp_path: Path, influx: InfluxServer, inspect: str = "influx_inspect", **extra: str
) -> Path:
    config = {
        "state_dir": str(tmp_path / "state"),
        "log_level": "info",
        "influx": {
            "inspect": inspect,
            "data_dir": str(influx.data_dir),
            "wal_dir": str(influx.wal_dir),
            "chunk": "7d",
            "output_dir": str(tmp_path / "influx"),
            **extra,
        },
    }
    path = tmp_path / "headlined.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def chunk_states(state_dir: Path) -> list[tuple[str, str, str, str | None]]:
    conn = duckdb.connect(str(state_dir / "headlined.duckdb"), read_only=True)
    try:
        return conn.execute(
            "SELECT database, strftime(start, '%Y-%m-%d'), state, error FROM export_chunks "
            "ORDER BY ALL"
        ).fetchall()
    finally:
        conn.close()


def test_every_point_exactly_once_with_its_latest_value(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, fixture = filled
    config = write_config(tmp_path, influx)
    result = export(config)
    assert result.returncode == 0, result.stderr
    assert "export complete" in result.stderr
    found = read_dataset(tmp_path / "influx")
    assert normalise(found) == normalise(fixture.expected)
    for (db, rp, measurement), points in fixture.expected.items():
        assert influx.count(db, measurement, rp) == len(points), (db, rp, measurement)
    assert {s for _, _, s, _ in chunk_states(tmp_path / "state")} == {"done"}
    again = export(config)  # everything done: nothing to redo, nothing doubled
    assert again.returncode == 0
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)
    views = subprocess.run(
        [
            sys.executable,
            "-m",
            "headlined",
            "query",
            "-c",
            str(config),
            "--json",
            'SELECT count(*) AS n, count(DISTINCT retention_policy) AS rps FROM "sensors"."pm"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert views.returncode == 0, views.stderr
    expected_pm = len(fixture.expected[("sensors", "autogen", "pm")]) + len(
        fixture.expected[("sensors", "archive", "pm")]
    )
    assert json.loads(views.stdout) == {"n": expected_pm, "rps": 2}


def published(out: Path) -> int:
    """Parquet files in their final place: never under ``.work``, which a run empties as it
    goes (pathlib's ``*`` would walk into it)."""
    if not out.exists():
        return 0
    return sum(
        len(list(database.glob("*/*/*.parquet")))
        for database in out.iterdir()
        if database.is_dir() and not database.name.startswith(".")
    )


def test_kill_9_of_export_at_random_moments_then_rerun(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, fixture = filled
    config = write_config(tmp_path, influx)
    out = tmp_path / "influx"
    rng = random.Random(5)  # noqa: S311  reproducible kill moments, not cryptography
    mid_run = 0
    # A whole export of the fixture takes well under a second: kill each run at a random
    # moment soon after it published a chunk of its own, so every kill lands while it works.
    for _ in range(4):
        before = published(out)
        proc = subprocess.Popen(
            [sys.executable, "-m", "headlined", "export", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while published(out) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.04))
        mid_run += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # What a kill leaves under .work/ is never counted by a `**/*.parquet` reader.
        assert not list((out / ".work").rglob("*.parquet"))
    assert mid_run >= 3, "the kills came after the export had finished: nothing was tested"
    states = {s for _, _, s, _ in chunk_states(tmp_path / "state")}
    assert states - {"done"}, "every chunk was done before the rerun"
    result = export(config)
    assert result.returncode == 0, result.stderr
    assert normalise(read_dataset(out)) == normalise(fixture.expected)
    leftovers = list(out.rglob("*.tmp")) + list((out / ".work").glob("*/out/**/*.parquet"))
    assert leftovers == []


# kill -9 of influx_inspect: a wrapper runs the real one with its -out redirected into a FIFO
# whose pipe holds one page, copies a seeded random number of bytes to the real -out, then
# kill -9s it (blocked mid-write, so surely mid-run) and dies of SIGKILL itself, which is what
# the exporter sees when influx_inspect is killed. Only the first attempt of the first KILLED
# sensors/autogen runs (each ≥ 25 kB of output) is killed: the WAL probe while planning, then
# two chunks; so every retry can succeed.
KILLING_WRAPPER = """#!{python}
import fcntl, os, random, select, signal, subprocess, sys, zlib
from pathlib import Path

REAL, STATE, KILLED = {real!r}, Path({state!r}), {killed}
args = sys.argv[1:]
if not (" -database sensors -retention autogen " in " ".join(["", *args, ""]) and "-out" in args):
    os.execv(REAL, [REAL, *args])
seen = STATE / f"seen-{{zlib.crc32(' '.join(args).encode())}}"
if seen.exists() or len(list(STATE.glob("seen-*"))) >= KILLED:
    os.execv(REAL, [REAL, *args])
seen.touch()
out = Path(args[args.index("-out") + 1])
fifo = STATE / f"fifo-{{seen.name}}"  # -out is a pipe the wrapper inherited: no folder
os.mkfifo(fifo)
fd = os.open(fifo, os.O_RDWR)  # never blocks; the pipe exists from here on
fcntl.fcntl(fd, 1031, 4096)  # F_SETPIPE_SZ: one page, so the writer blocks on the next one
args[args.index("-out") + 1] = str(fifo)
proc = subprocess.Popen([REAL, *args])
budget = random.Random(seen.name).randrange(0, 16000)
with out.open("wb") as copy:
    while budget > 0 and proc.poll() is None:
        if select.select([fd], [], [], 0.1)[0]:
            data = os.read(fd, min(budget, 4096))
            copy.write(data)
            budget -= len(data)
proc.kill()
status = proc.wait()
with (STATE / "outcomes").open("a") as log:
    log.write(f"{{status}}\\n")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_of_influx_inspect_is_retried(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, fixture = filled
    state = tmp_path / "wrapper"
    state.mkdir()
    wrapper = tmp_path / "influx_inspect"
    wrapper.write_text(
        KILLING_WRAPPER.format(
            python=sys.executable,
            real=require_binary("influx_inspect"),
            state=str(state),
            killed=KILLED,
        )
    )
    wrapper.chmod(0o755)
    config = write_config(tmp_path, influx, inspect=str(wrapper))
    result = export(config)
    assert result.returncode == 0, result.stderr
    # Each was killed by the signal while it ran, never after it had finished by itself.
    assert (state / "outcomes").read_text().split() == [str(-signal.SIGKILL)] * KILLED
    retries = [line for line in result.stdout.splitlines() if "export_chunk_retry" in line]
    assert len(retries) == KILLED  # logs go to stdout
    assert all("influx_inspect was killed by SIGKILL" in line for line in retries), retries
    assert "reading the WAL of sensors/autogen" in retries[0]
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)
    assert list((tmp_path / "influx" / ".work").glob("*/out/**/*.parquet")) == []


def test_failing_chunk_is_marked_and_others_complete(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, _ = filled
    real = require_binary("influx_inspect")
    wrapper = tmp_path / "influx_inspect"
    wrapper.write_text(f"""#!/bin/sh
for arg in "$@"; do
  case "$arg" in 2024-01-15T*) echo "simulated: shard is unreadable" >&2; exit 1;; esac
done
exec {real} "$@"
""")
    wrapper.chmod(0o755)
    config = write_config(tmp_path, influx, inspect=str(wrapper))
    result = export(config)
    assert result.returncode == 1
    assert "2024-01-15" in result.stderr
    assert "simulated: shard is unreadable" in result.stderr
    states = chunk_states(tmp_path / "state")
    failed = [(db, start) for db, start, state, _ in states if state == "failed"]
    assert failed
    assert all(start == "2024-01-15" for _, start in failed)
    assert all(
        error and "simulated" in error for _, start, state, error in states if state == "failed"
    )
    assert all(state == "done" for _, start, state, _ in states if start != "2024-01-15")


def test_rejected_lines_are_kept_per_database_policy_and_chunk(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    """A wrapper adds a line that is not line protocol to every export: each chunk keeps its
    own rejected file, also where chunks of several databases share a time range."""
    influx, fixture = filled
    wrapper = tmp_path / "influx_inspect"
    wrapper.write_text(f"""#!/bin/sh
out=""; previous=""
for arg in "$@"; do [ "$previous" = "-out" ] && out="$arg"; previous="$arg"; done
{require_binary("influx_inspect")} "$@" || exit $?
if [ -n "$out" ]; then printf 'not line protocol\\n' >> "$out"; fi
""")
    wrapper.chmod(0o755)
    config = write_config(tmp_path, influx, inspect=str(wrapper))
    result = export(config)
    assert result.returncode == 0, result.stderr
    conn = duckdb.connect(str(tmp_path / "state" / "headlined.duckdb"), read_only=True)
    try:
        chunks = conn.execute(
            "SELECT database, retention_policy, strftime(start, '%Y%m%dT%H%M%SZ') || '_' || "
            "strftime(\"end\", '%Y%m%dT%H%M%SZ') FROM export_chunks WHERE state = 'done'"
        ).fetchall()
    finally:
        conn.close()
    assert len({start for _, _, start in chunks}) < len(chunks)  # shared ranges exist
    rejected = tmp_path / "influx" / "_rejected"
    files = sorted(p.relative_to(rejected) for p in rejected.rglob("*.txt"))
    assert files == sorted(
        Path(path_segment(db), path_segment(rp), f"{stem}.txt") for db, rp, stem in chunks
    )
    for path in files:
        assert (rejected / path).read_text().rstrip().endswith("not line protocol")
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)


def test_the_next_chunk_is_exported_while_one_writes_its_parquet(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    """`headlined export` overlaps chunks, but never runs two influx_inspect at once."""
    influx, fixture = filled
    runs = tmp_path / "runs"
    wrapper = tmp_path / "influx_inspect"
    wrapper.write_text(f"""#!/bin/sh
case " $* " in *" -start "*) echo "start $(date +%s.%N)" >> {runs};; esac
{require_binary("influx_inspect")} "$@"; code=$?
case " $* " in *" -start "*) echo "end $(date +%s.%N)" >> {runs};; esac
exit $code
""")
    wrapper.chmod(0o755)
    result = export(write_config(tmp_path, influx, inspect=str(wrapper)))
    assert result.returncode == 0, result.stderr
    events = [line.split() for line in runs.read_text().splitlines()]
    starts = [float(t) for kind, t in events if kind == "start"]
    ends = [float(t) for kind, t in events if kind == "end"]
    assert len(starts) == len(ends) > 3
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False))  # one at a time
    conn = duckdb.connect(str(tmp_path / "state" / "headlined.duckdb"), read_only=True)
    try:
        done = [
            t.timestamp()
            for (t,) in conn.execute(
                "SELECT updated_at FROM export_chunks WHERE state = 'done' ORDER BY updated_at"
            ).fetchall()
        ]
    finally:
        conn.close()
    # A chunk is exported once, streamed to the converter; twice when the pivot gives up on
    # it (the fixture's strings with escapes): again into a file, for the general way.
    again = [line for line in result.stdout.splitlines() if "export_chunk_through_file" in line]
    assert 0 < len(again) < len(done)
    assert len(done) + len(again) == len(starts)
    # Some chunk was marked done only after the next one's influx_inspect had started.
    assert any(marked > start for marked, start in zip(done, starts[1:], strict=False))
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)


@pytest.mark.parametrize("level", ["warning", "info"])
def test_export_logs_at_the_configured_level(tmp_path: Path, level: str) -> None:
    """`log_level` applies to `headlined export` too, as JSON lines on stdout."""
    (tmp_path / "data" / "db1" / "autogen").mkdir(parents=True)  # a database with no point
    (tmp_path / "wal").mkdir()
    config = tmp_path / "headlined.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "log_level": level,
                "influx": {
                    "data_dir": str(tmp_path / "data"),
                    "wal_dir": str(tmp_path / "wal"),
                    "output_dir": str(tmp_path / "out"),
                },
            }
        )
    )
    result = export(config)
    assert result.returncode == 0, result.stderr
    assert "nothing to export: db1/autogen hold no points in" in result.stderr
    events = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert ("export_planned" in events) == (level == "info"), result.stdout


def test_a_range_that_excludes_the_data_says_so_alone_and_through_the_daemon(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, _ = filled
    config = write_config(tmp_path, influx, start="2030-01-01T00:00:00Z")
    alone = export(config)
    assert alone.returncode == 0, alone.stderr
    assert "nothing to export" in alone.stderr
    warned = [line for line in alone.stdout.splitlines() if "export_range_excludes_data" in line]
    assert len(warned) == 4  # every database and retention policy of the fixture
    assert any("sensors" in line and "2024-01" in line for line in warned)
    assert chunk_states(tmp_path / "state") == []

    daemon = Daemon(config)
    daemon.wait_started()
    handed = export(config, timeout=60)  # it once waited for chunks that never came
    assert daemon.stop() == 0, daemon.output()
    assert handed.returncode == 0, handed.stderr
    assert "the daemon holds the state file" in handed.stderr
    assert "nothing to export" in handed.stderr
    assert daemon.events("export_range_excludes_data")
