"""headlined.influx.spawn: the helper `headlined export` starts before it reads its config is
used only when the config wants that very helper, and never outlives the export."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from headlined.config import InfluxConfig
from headlined.influx import spawn
from headlined.influx.protocol import FAILURE, read_header, read_payload


def answers(helper: spawn.Local) -> dict[str, object]:
    """The helper's reply to a request it must refuse: it is up and reading its socket."""
    helper.sock.sendall(b"{}\n")
    with helper.sock.makefile("rb") as out:
        header = read_header(out)
        assert header is not None
        assert header[0] == FAILURE
        reply: dict[str, object] = json.loads(read_payload(out, header[1]))
    return reply


def test_the_defaults_are_the_configs() -> None:
    fields = InfluxConfig.model_fields
    assert fields["inspect"].default == spawn.DEFAULT_INSPECT
    assert fields["inspect_socket"].default == spawn.DEFAULT_SOCKET


def test_the_early_helper_serves_a_default_config_in_the_foreground() -> None:
    with spawn.Early() as early:
        helper = early.take(spawn.DEFAULT_INSPECT, polite=False)
        assert helper is not None
        assert early.take(spawn.DEFAULT_INSPECT, polite=False) is None  # handed over once
    try:
        assert answers(helper)["kind"] == "bad_request"  # taken: still running after the block
    finally:
        spawn.stop(helper)
    assert helper.proc.returncode == 0


@pytest.mark.parametrize(
    ("inspect", "polite"),
    [("/opt/influxdb/bin/influx_inspect", False), (spawn.DEFAULT_INSPECT, True)],
)
def test_the_early_helper_is_stopped_when_the_config_wants_another(
    inspect: str, polite: bool
) -> None:
    with spawn.Early() as early:
        started = early._helper  # the process, to see that it ended
        assert started is not None
        assert early.take(inspect, polite=polite) is None
        assert started.proc.returncode == 0  # stopped (waited for), not left running


def test_an_early_helper_not_taken_is_stopped() -> None:
    with spawn.Early() as early:
        started = early._helper  # the process, to see that it ended
        assert started is not None
    assert started.proc.returncode == 0


def test_no_early_helper_where_headlined_inspect_socket_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "inspect.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    monkeypatch.setattr(spawn, "DEFAULT_SOCKET", path)
    try:
        with spawn.Early() as early:
            assert early.take(spawn.DEFAULT_INSPECT, polite=False) is None
    finally:
        listening.close()
