"""The shipped units: `systemd-analyze verify` clean, every service's exposure at most 1.5."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[1] / "systemd"
UNIT = UNITS / "headlined.service"
SERVICES = ("headlined.service", "headlined-inspect@.service")
MAX_EXPOSURE = 1.5


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing: CI must install systemd")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return exe


def local_units(tmp_path: Path) -> Path:
    """The units with the installed programs pointing at this checkout's console scripts.

    verify checks that ExecStart= exists; the .deb test checks the installed units as they are.
    """
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "headlined").exists(), bin_dir
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/usr/bin/headlined", str(bin_dir / "headlined"))
        text = text.replace("/opt/headlined/venv/bin/", f"{bin_dir}/")
        (tmp_path / unit.name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("unit", ["headlined.service", "headlined-inspect.socket"])
def test_units_verify_clean(tmp_path: Path, unit: str) -> None:
    """The socket's verify also loads the service it starts per connection."""
    result = subprocess.run(
        [systemd_analyze(), "verify", unit],
        cwd=local_units(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "headlined" not in result.stderr, result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_exposure_score_at_most_1_5(service: str) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNITS / service)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    name = re.escape(service.replace("@.", "@i."))  # a template is rated as instance "i"
    match = re.search(rf"Overall exposure level for {name}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_inspect_service_reads_as_influxdb_without_network_at_low_priority() -> None:
    text = (UNITS / "headlined-inspect@.service").read_text()
    for setting in (
        "User=influxdb",
        "StandardInput=socket",
        "StandardOutput=socket",
        "PrivateNetwork=yes",
        "ProtectSystem=strict",
        "Nice=10",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
    ):
        assert setting in text, setting
    socket_unit = (UNITS / "headlined-inspect.socket").read_text()
    for setting in ("Accept=yes", "SocketGroup=headlined", "SocketMode=0660"):
        assert setting in socket_unit, setting


def test_unit_has_the_contract_settings() -> None:
    text = UNIT.read_text()
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecReload=",
        "StateDirectory=headlined",
        "ConfigurationDirectory=headlined",
        "LoadCredential=",
        "TimeoutStopSec=",
    ):
        assert setting in text, setting
