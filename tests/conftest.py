"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon_process import reap
from tests.support.notify_socket import NotifyListener


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
