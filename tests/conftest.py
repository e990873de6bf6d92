"""Shared pytest fixtures."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon_process import reap
from tests.support.deb_package import build
from tests.support.notify_socket import NotifyListener
from tests.support.postgres_server import PostgresServer, require_postgres, running_postgres
from tests.support.s3_server import S3Bucket, S3Server, running_s3


@pytest.fixture(autouse=True)
def _no_systemd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's or CI's systemd environment out of every test."""
    for name in (
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "CREDENTIALS_DIRECTORY",
        "HEADLINED_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["path", "abstract"])
def notify_listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifyListener]:
    """A real NOTIFY_SOCKET, once as a filesystem path and once as an abstract name."""
    listener = NotifyListener(tmp_path, abstract=request.param == "abstract")
    yield listener
    listener.close()


@pytest.fixture(autouse=True)
def _reap_daemons() -> Iterator[None]:
    """A test that fails half-way must not leave a daemon running into the next one."""
    yield
    reap()


# Names for per-test databases and buckets on the session's servers.
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL on loopback for the whole session (startup costs seconds)."""
    require_postgres()
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL (psycopg2) of a fresh database of this test's own."""
    return postgres_server.create_database(f"test_{next(_names)}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 emulator (moto) on loopback for the whole session."""
    with running_s3(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A fresh, empty bucket of this test's own on the S3 emulator."""
    return s3_server.create_bucket(f"test-{next(_names)}")


@pytest.fixture(scope="session")
def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """The .deb from packaging/build-deb, built once for the whole session when a test first
    asks (about a minute: test_deb and test_systemd_deb share it)."""
    return functools.cache(lambda: build(tmp_path_factory.mktemp("dist")))
