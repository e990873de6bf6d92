"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_systemd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's or CI's systemd environment out of every test."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
                 "CREDENTIALS_DIRECTORY", "HEADLINED_CONFIG"):
        monkeypatch.delenv(name, raising=False)
