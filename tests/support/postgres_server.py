"""A throwaway real PostgreSQL server for tests, from Debian's `postgresql` package.

`running_postgres()` makes a cluster with `initdb` in a fresh temporary directory, starts
`postgres` listening on 127.0.0.1 only (at a free port; no Unix socket), with password
(scram-sha-256) authentication, and removes everything when it stops. `create_database()`
gives each test a database of its own, so one server can serve a whole session.

initdb and postgres refuse to run as root. As root, both run as the `postgres` user the
package creates (through `setpriv`, which execs in place: the process this module starts and
signals is postgres itself), and the directory is made in the system's temp directory and
owned by that user: pytest's own temp directories are private to root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.influxdb_server import free_ports
from tests.support.processes import terminate

INSTALL_HINT = "install Debian's `postgresql` package (as root: apt-get install postgresql)"
SUPERUSER = "headlined"
# A fake secret, on purpose: a test can check it never reaches a log or an error message.
PASSWORD = "pg-test-secret-7b1f"
RUN_AS = "postgres"
# Where Debian installs each major version's programs (off PATH).
DEBIAN_ROOT = Path("/usr/lib/postgresql")


class PostgresError(RuntimeError):
    """PostgreSQL failed to initialise or to start."""


def find_bin_dir() -> Path:
    """The directory of the newest installed PostgreSQL's programs (initdb, postgres).

    Debian keeps them off PATH, in /usr/lib/postgresql/<major>/bin; elsewhere initdb is on
    PATH. FileNotFoundError says how to install them.
    """
    found = list(DEBIAN_ROOT.glob("*/bin/initdb"))
    if found:
        newest = max(found, key=lambda p: int(p.parents[1].name))
        return newest.parent
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).parent
    raise FileNotFoundError(f"PostgreSQL's initdb not found; {INSTALL_HINT}")


def require_postgres() -> Path:
    """`find_bin_dir()` for a test that needs PostgreSQL.

    Missing, it fails the test under CI (CI=true), where a skip would hide a broken install
    step, and skips it elsewhere so a developer without PostgreSQL can still run the suite.
    """
    try:
        return find_bin_dir()
    except FileNotFoundError as exc:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _demote() -> list[str]:
    # The argv prefix that runs a program as RUN_AS when this process is root, else nothing.
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={RUN_AS}", f"--regid={RUN_AS}", "--clear-groups", "--"]


class PostgresServer:
    """One postgres process whose cluster lives in a temporary directory of its own."""

    def __init__(self) -> None:
        """Prepare (but do not start) a server; `start()` makes the cluster."""
        self._bin = find_bin_dir()
        self.root: Path | None = None
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """postgres's stdout and stderr."""
        if self.root is None:
            raise PostgresError("the server was never started")
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server (psycopg2, with the password)."""
        return f"postgresql+psycopg2://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    @contextlib.contextmanager
    def engine(self, database: str = "postgres") -> Iterator[sa.Engine]:
        """A SQLAlchemy engine on `database` as the superuser, in autocommit mode (so
        CREATE DATABASE works); disposed on exit."""
        engine = sa.create_engine(
            self.url(database),
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 5},
            poolclass=sa.pool.NullPool,
        )
        try:
            yield engine
        finally:
            engine.dispose()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (a plain identifier); returns its SQLAlchemy URL."""
        if not name.isidentifier():
            raise ValueError(f"{name!r}: use a plain identifier for a test database")
        with self.engine() as engine, engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def _initdb(self, data: Path) -> None:
        assert self.root is not None
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            for path in (self.root, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        result = subprocess.run(
            [
                *_demote(),
                str(self._bin / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",  # a test cluster need not survive a power cut
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed ({result.returncode}): {result.stdout}{result.stderr}"
            )

    def start(self, timeout: float = 60.0) -> None:
        """Make the cluster and start postgres; wait until it accepts a login."""
        self.root = Path(tempfile.mkdtemp(prefix="headlined-pg-"))
        data = self.root / "data"
        self._initdb(data)
        (self.port,) = free_ports(1)
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",  # TCP on loopback only
            # Durability of the test server itself is not under test; these make it fast.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            # Two publishers plus readers per test, several tests per session.
            "max_connections": "200",
        }
        argv = [*_demote(), str(self._bin / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                log_text = self.log_tail()
                self.stop()
                raise PostgresError(f"postgres exited with {code} while starting:\n{log_text}")
            with contextlib.suppress(sa.exc.OperationalError), self.engine() as engine:
                engine.connect().close()
                return
            if time.monotonic() > deadline:
                log_text = self.log_tail()
                self.stop()
                raise PostgresError(
                    f"postgres did not accept a login in {timeout:g} s:\n{log_text}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of postgres's log, to explain a failure."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, PostgresError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop postgres (SIGINT: its fast shutdown; killed after `timeout` s); delete its
        directory."""
        if self._process is not None:
            terminate(self._process, signal.SIGINT, timeout)
        self._process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server and delete its cluster."""
        self.stop()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Run a throwaway PostgreSQL on loopback; stopped and deleted on exit."""
    with PostgresServer() as server:
        yield server
