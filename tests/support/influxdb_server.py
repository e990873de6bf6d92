"""A throwaway real influxd (InfluxDB 1.x) for tests and benchmarks.

`running_influxd(tmp_dir)` starts `influxd` with every directory inside `tmp_dir`, loopback-only
ports picked at random, reporting and the `_internal` monitor database off, and quiet logs. The
binaries come from Debian's `influxdb` package plus an `influx_inspect` built from its source
(`scripts/install-influxdb`); see shared/spec/REAL-INFLUXDB.md.

Where the data sits, as observed with influxd 1.6.7~rc0:
- A write lands in the shard's WAL (`wal/DB/RP/SHARD/_00001.wal`) and its in-memory cache. The
  cache becomes a TSM file (`data/DB/RP/SHARD/000000001-000000001.tsm`) only when it outgrows
  `cache-snapshot-memory-size` (25 MiB) or after `cache-snapshot-write-cold-duration` (10 min)
  without writes, so a test's small writes stay in the WAL.
- Stopping influxd does NOT snapshot: on the next start the WAL is replayed into the cache and the
  files stay as they were. A restart cannot move data into TSM.
- `RunningInflux.flush_to_tsm` forces the move on demand: it runs `influxd backup` against the RPC
  port, whose per-shard snapshot request first writes the cache to a new TSM file and deletes the
  WAL segments it covered. Data written after it lands in the WAL again.
"""

from __future__ import annotations

import abc
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import terminate

INSTALL_HINT = "run scripts/install-influxdb (as root) to install influxd and influx_inspect"


class InfluxError(RuntimeError):
    """influxd refused a request, or failed to start."""


def find_binary(name: str) -> str:
    """Return the path of program `name` on PATH; FileNotFoundError says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found on PATH; {INSTALL_HINT}")
    return path


def require_binary(name: str) -> str:
    """Return the path of program `name` for a test that needs it.

    Missing, it fails the test under CI (CI=true), where a skip would hide a broken install
    step, and skips it elsewhere so a developer without InfluxDB can still run the suite.
    """
    try:
        return find_binary(name)
    except FileNotFoundError as exc:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (database, retention policy, measurement)."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen, so the ports differ from each other.
    # Another process could still take one before influxd binds it; start() then fails with
    # influxd's "address already in use" in its message.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def toml_string(value: str) -> str:
    # A JSON string literal without \u escapes (which TOML rejects for surrogate pairs) is a
    # valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def edit_config(text: str, settings: Mapping[tuple[str, str], str]) -> str:
    """Set `key = value` for each (section, key) in `settings` in `influxd config` output.

    Section "" is the top level. Every key must already be there: the output lists all of them,
    so a missing one means a different influxd whose config this helper does not know.
    """
    section = ""
    found: set[tuple[str, str]] = set()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, sep, _ = stripped.partition("=")
        where = (section, key.strip())
        if sep and where in settings:
            indent = line[: len(line) - len(line.lstrip())]
            lines[index] = f"{indent}{where[1]} = {settings[where]}"
            found.add(where)
    missing = set(settings) - found
    if missing:
        raise InfluxError(f"`influxd config` output lacks {sorted(missing)}")
    return "\n".join(lines) + "\n"


def reporting_off(text: str) -> dict[tuple[str, str], str]:
    """The `edit_config` setting that turns usage reporting off in `influxd config` output.

    Debian's build turns upstream's `reporting-disabled` into `reporting-enabled`; this
    switches reporting off under whichever name that influxd has.
    """
    if "reporting-enabled" in text:
        return {("", "reporting-enabled"): "false"}
    return {("", "reporting-disabled"): "true"}


class RunningInflux(abc.ABC):
    """A running influxd as a test reaches it, however it was started: its HTTP API, the RPC
    snapshot that `influxd backup` asks for, and its TSM and WAL files.
    """

    @property
    @abc.abstractmethod
    def client(self) -> httpx.Client:
        """HTTP client bound to the HTTP API's base URL."""

    @property
    @abc.abstractmethod
    def rpc_address(self) -> str:
        """host:port of the RPC service that `influxd backup` talks to."""

    @property
    @abc.abstractmethod
    def data_dir(self) -> Path:
        """The `-datadir` for influx_inspect (as this process sees it): TSM files under
        DB/RP/SHARD_ID/."""

    @property
    @abc.abstractmethod
    def wal_dir(self) -> Path:
        """The `-waldir` for influx_inspect (as this process sees it): WAL segments under
        DB/RP/SHARD_ID/."""

    def query(self, q: str, db: str | None = None, *, epoch: str | None = None) -> dict[str, Any]:
        """Run InfluxQL `q` via POST /query and return the parsed JSON.

        `epoch` ("ns", "u", "ms", "s") makes times integers instead of RFC3339 strings. Raises
        InfluxError when the request or any statement in it failed.
        """
        params = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            params["epoch"] = epoch
        response = self.client.post("/query", data=params)
        try:
            body: dict[str, Any] = response.json()
        except ValueError:  # influxd always answers JSON; anything else is worth seeing whole
            raise InfluxError(f"{q!r} failed ({response.status_code}): {response.text}") from None
        errors = [body["error"]] if "error" in body else []
        errors += [r["error"] for r in body.get("results", []) if "error" in r]
        if response.status_code != 200 or errors:
            raise InfluxError(f"{q!r} failed ({response.status_code}): {'; '.join(errors)}")
        return body

    def create_database(self, name: str) -> None:
        """CREATE DATABASE `name` (with its default `autogen` retention policy, infinite)."""
        self.query(f"CREATE DATABASE {quote_ident(name)}")

    def create_retention_policy(
        self, db: str, name: str, duration: str = "INF", *, default: bool = False
    ) -> None:
        """CREATE RETENTION POLICY `name` ON `db` with an InfluxQL `duration` ("INF", "52w").

        A finite duration makes influxd drop (and `write` raise on) points older than it.
        """
        statement = (
            f"CREATE RETENTION POLICY {quote_ident(name)} ON {quote_ident(db)} "
            f"DURATION {duration} REPLICATION 1"
        )
        self.query(statement + (" DEFAULT" if default else ""))

    def write(
        self, db: str, lines: str | list[str], rp: str | None = None, precision: str = "ns"
    ) -> None:
        """Write line protocol via POST /write; raise InfluxError unless influxd answers 204."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = {"db": db, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        response = self.client.post("/write", params=params, content=body.encode())
        if response.status_code != 204:
            raise InfluxError(
                f"write to {db}/{rp} failed ({response.status_code}): {response.text.strip()}"
            )

    def count(self, db: str, measurement: str, rp: str | None = None) -> int:
        """Number of points in `measurement`: distinct (series, timestamp) pairs.

        `SELECT COUNT(*)` cannot tell this: it counts values per field, and a point may carry
        any subset of fields. So this streams `SELECT * ... GROUP BY *` (one row per point of
        each series) in chunks and counts rows: exact, and a full scan; see `count_values` for
        the cheap aggregate.
        """
        q = f"SELECT * FROM {self._source(db, measurement, rp)} GROUP BY *"
        params = {"q": q, "db": db, "epoch": "ns", "chunked": "true", "chunk_size": "10000"}
        points = 0
        with self.client.stream("POST", "/query", data=params) as response:
            if response.status_code != 200:
                response.read()
                raise InfluxError(f"{q!r} failed ({response.status_code}): {response.text}")
            for line in response.iter_lines():
                if not line.strip():
                    continue
                chunk = json.loads(line)
                for result in chunk.get("results", []):
                    if "error" in result:
                        raise InfluxError(f"{q!r} failed: {result['error']}")
                    points += sum(len(s.get("values", [])) for s in result.get("series", []))
        return points

    def count_values(self, db: str, measurement: str, rp: str | None = None) -> int:
        """Number of field values in `measurement`: the sum of `SELECT COUNT(*)` over fields.

        It equals the number of lines `influx_inspect export` writes for the measurement, since
        the export prints one field value per line.
        """
        body = self.query(f"SELECT COUNT(*) FROM {self._source(db, measurement, rp)}", db)
        total = 0
        for series in body["results"][0].get("series", []):
            for row in series["values"]:
                total += sum(v for v in row[1:] if v is not None)  # row[0] is the time
        return total

    @staticmethod
    def _source(db: str, measurement: str, rp: str | None) -> str:
        # An explicit RP is needed to read a non-default one; `db..m` reads the default.
        return f"{quote_ident(db)}.{quote_ident(rp) if rp else ''}.{quote_ident(measurement)}"

    def flush_to_tsm(self, db: str, rp: str | None = None) -> None:
        """Move everything written so far to `db` (or only its `rp`) from WAL into TSM files.

        influxd 1.6 has no flush command, but the RPC snapshot request behind `influxd backup`
        writes each shard's cache to TSM and drops the WAL segments it covered before it copies
        anything. `-since` in the far future makes that copy empty, so this costs a snapshot,
        not a backup. Later writes land in the WAL again.
        """
        argv = [
            find_binary("influxd"),
            "backup",
            "-host",
            self.rpc_address,
            "-database",
            db,
            "-since",
            "2200-01-01T00:00:00Z",
        ]
        if rp is not None:
            argv += ["-retention", rp]
        with tempfile.TemporaryDirectory(prefix="influxd-backup-") as out:
            result = subprocess.run(
                [*argv, out], capture_output=True, text=True, timeout=120, check=False
            )
        if result.returncode != 0:
            raise InfluxError(
                f"influxd backup failed ({result.returncode}): {result.stdout}{result.stderr}"
            )

    def tsm_files(self, db: str | None = None) -> list[Path]:
        """TSM files under data_dir (of one database if `db` is given), sorted."""
        return sorted(self.data_dir.glob(f"{_any_or(db)}/*/*/*.tsm"))

    def wal_segments(self, db: str | None = None) -> list[Path]:
        """Non-empty WAL segment files under wal_dir (of one database if `db` is given), sorted.

        Empty ones are left out: a snapshot leaves a fresh, empty segment behind (removed on
        the next start), and it holds no data.
        """
        files = self.wal_dir.glob(f"{_any_or(db)}/*/*/*.wal")
        return sorted(f for f in files if f.stat().st_size > 0)


class InfluxServer(RunningInflux):
    """One influxd process whose meta, data and WAL directories live under `root`.

    `start()` picks fresh ports each time, so a stopped server can be started again on the
    same files (which is how a test checks what survives a restart).
    """

    def __init__(self, root: Path) -> None:
        """Prepare (but do not start) a server keeping everything under `root`."""
        self._influxd = find_binary("influxd")
        self.root = root
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self._http_port = 0
        self._rpc_port = 0

    @property
    def meta_dir(self) -> Path:
        """Directory of the meta store (databases, retention policies, shard groups)."""
        return self.root / "meta"

    @property
    def data_dir(self) -> Path:
        """The `-datadir` for influx_inspect: TSM files under DB/RP/SHARD_ID/."""
        return self.root / "data"

    @property
    def wal_dir(self) -> Path:
        """The `-waldir` for influx_inspect: WAL segments under DB/RP/SHARD_ID/."""
        return self.root / "wal"

    @property
    def config_path(self) -> Path:
        """The config file written by `start()`."""
        return self.root / "influxd.conf"

    @property
    def log_path(self) -> Path:
        """influxd's stdout and stderr."""
        return self.root / "influxd.log"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self._http_port}"

    @property
    def rpc_address(self) -> str:
        """host:port of the RPC service that `influxd backup` talks to."""
        return f"127.0.0.1:{self._rpc_port}"

    def _write_config(self) -> None:
        # `-config /dev/null` prints the built-in defaults, not whatever /etc/influxdb or
        # ~/.influxdb holds on this machine.
        defaults = subprocess.run(
            [self._influxd, "config", "-config", os.devnull],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        self._rpc_port, self._http_port = free_ports(2)
        settings = {
            **reporting_off(defaults),
            ("", "bind-address"): toml_string(self.rpc_address),
            ("meta", "dir"): toml_string(str(self.meta_dir)),
            ("meta", "logging-enabled"): "false",
            ("data", "dir"): toml_string(str(self.data_dir)),
            ("data", "wal-dir"): toml_string(str(self.wal_dir)),
            ("data", "query-log-enabled"): "false",
            # No `_internal` database: it would write in the background and show up in an
            # export without -database.
            ("monitor", "store-enabled"): "false",
            ("http", "bind-address"): toml_string(f"127.0.0.1:{self._http_port}"),
            ("http", "log-enabled"): "false",
            ("logging", "level"): toml_string("warn"),
            ("logging", "suppress-logo"): "true",
            ("continuous_queries", "log-enabled"): "false",
        }
        self.config_path.write_text(edit_config(defaults, settings), encoding="utf-8")

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines influxd printed, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def start(self, timeout: float = 20.0) -> None:
        """Start influxd and wait until GET /ping answers 204."""
        if self._process is not None:
            raise InfluxError("influxd is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        # INFLUXDB_* variables override the config file; keep the caller's out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self._influxd, "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._client = httpx.Client(base_url=self.http_url, timeout=60.0)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._cleanup()
                raise InfluxError(f"influxd exited with {code} while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self._client.get("/ping").status_code == 204:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise InfluxError(
                    f"influxd did not answer /ping with 204 within {timeout:g} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop influxd by SIGTERM (its clean shutdown); kill it if that takes over `timeout` s."""
        process = self._process
        if process is None:
            return
        terminate(process, signal.SIGTERM, timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._process = None

    @property
    def client(self) -> httpx.Client:
        """HTTP client bound to `http_url`; only while the server runs."""
        if self._client is None:
            raise InfluxError("influxd is not running")
        return self._client

    def __enter__(self) -> InfluxServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()


def _any_or(name: str | None) -> str:
    # A glob part matching `name` literally, or any name when it is None.
    return "*" if name is None else glob.escape(name)


@contextlib.contextmanager
def running_influxd(tmp_dir: Path) -> Iterator[InfluxServer]:
    """Run an influxd keeping its files under `tmp_dir`; stopped on exit."""
    with InfluxServer(tmp_dir) as server:
        yield server
