"""The notify adapter against a real AF_UNIX datagram socket."""

from __future__ import annotations

import os

import pytest

from headlined.notify import Notifier, watchdog_interval
from tests.support.notify_socket import NotifyListener


def test_messages_reach_a_real_socket(notify_listener: NotifyListener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_listener.address})
    assert notifier.enabled
    notifier.ready("starting")
    notifier.status("3 sources")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()
    got = notify_listener.collect(0.5)
    assert got[0]["READY"] == "1"
    assert got[0]["STATUS"] == "starting"
    assert got[0]["MAINPID"] == str(os.getpid())
    assert got[1] == {"STATUS": "3 sources"}
    assert got[2] == {"WATCHDOG": "1"}
    assert got[3]["RELOADING"] == "1"
    assert int(got[3]["MONOTONIC_USEC"]) > 0
    assert got[4] == {"STOPPING": "1"}


def test_silent_without_notify_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("x")  # must not raise


def test_missing_socket_is_logged_not_fatal(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify.sock"})
    assert not notifier.enabled
    notifier.ready("x")
    assert "notify_socket_unusable" in capsys.readouterr().out


def test_full_socket_never_blocks(notify_listener: NotifyListener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_listener.address})
    # Nobody reads: the kernel queue fills, and send must drop instead of blocking.
    for _ in range(5000):
        notifier.status("x" * 200)
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_drops_are_logged_once_per_stall(
    notify_listener: NotifyListener, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_listener.address})
    for _ in range(5000):
        notifier.status("x" * 200)
    notify_listener.collect(0.3)
    notifier.watchdog()
    notifier.close()
    out = capsys.readouterr().out
    assert out.count("notify_dropping") == 1
    assert out.count("notify_recovered") == 1
