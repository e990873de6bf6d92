"""The shipped unit: `systemd-analyze verify` clean, exposure score at most 1.5."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "headlined.service"
MAX_EXPOSURE = 1.5


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing: CI must install systemd")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return exe


def local_unit(tmp_path: Path) -> Path:
    """The unit with /usr/bin/headlined pointing at this checkout's console script.

    verify checks that ExecStart= exists; the .deb test checks the installed unit as it is.
    """
    exe = Path(sys.executable).parent / "headlined"
    assert exe.exists(), exe
    unit = tmp_path / "headlined.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/headlined", str(exe)))
    return unit


def test_unit_verifies_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "headlined.service" not in result.stderr, result.stderr


def test_exposure_score_at_most_1_5() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for headlined\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


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
