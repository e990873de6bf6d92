"""The throwaway-PostgreSQL helper, checked against the real server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import postgres_server as pg_module
from tests.support.postgres_server import (
    PASSWORD,
    PostgresServer,
    require_postgres,
)
from tests.support.sockets import listening_addresses


def test_require_postgres_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing PostgreSQL must fail CI (a skip would hide a broken install) but only skip
    locally; Debian's versioned directory is found, the newest version first."""
    monkeypatch.setattr(pg_module, "DEBIAN_ROOT", tmp_path / "lib")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install postgresql"):
        require_postgres()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        require_postgres()
    for version in ("9", "15", "13"):
        bin_dir = tmp_path / "lib" / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "initdb").touch()
    assert require_postgres() == tmp_path / "lib" / "15" / "bin"


@pytest.mark.integration
def test_a_table_round_trips_in_a_database_of_the_tests_own(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """What one test writes through its URL reads back; another database does not see it."""
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id integer PRIMARY KEY, name text)"))
            conn.execute(
                sa.text("INSERT INTO t VALUES (:id, :name)"),
                [{"id": 1, "name": "ทดสอบ"}, {"id": 2, "name": "it's"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM t ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "ทดสอบ"), (2, "it's")]

    postgres_server.create_database("other_one")
    with postgres_server.engine("other_one") as other, other.connect() as conn:
        query = sa.text("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
        assert conn.execute(query).scalar() == 0


@pytest.mark.integration
def test_listens_on_loopback_only_and_checks_the_password(
    postgres_server: PostgresServer,
) -> None:
    """Nothing but 127.0.0.1 (no Unix socket, no other address); a wrong password is refused."""
    assert listening_addresses(postgres_server.port) == {"127.0.0.1"}
    with postgres_server.engine() as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
        assert conn.execute(sa.text("SHOW unix_socket_directories")).scalar() == ""
    assert PASSWORD in postgres_server.url()
    wrong = sa.create_engine(postgres_server.url().replace(PASSWORD, "wrong"))
    try:
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            wrong.connect()
    finally:
        wrong.dispose()


@pytest.mark.integration
def test_stop_closes_the_port_and_deletes_the_cluster() -> None:
    """After stop() nothing listens and nothing is left on disk."""
    require_postgres()
    with PostgresServer() as server:
        root, port = server.root, server.port
        assert root is not None
        assert (root / "data" / "PG_VERSION").exists()
    assert not root.exists()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
