"""The command line's start-up: each command imports only what it uses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HEAVY = ("duckdb", "pydantic", "httpx", "structlog")


def _heavy_imported_by(module: str) -> list[str]:
    """Which of HEAVY a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print(*[m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_the_command_line_alone_imports_no_heavy_dependency() -> None:
    # --help, convert and demo-feed need none of them.
    assert _heavy_imported_by("headlined.cli") == []


def test_the_export_command_does_without_httpx() -> None:
    # Only a config with sources (their URLs) needs it.
    assert "httpx" not in _heavy_imported_by("headlined.influx.cli")


def test_the_readme_command_table_names_every_command() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "headlined", "--help"], capture_output=True, text=True, check=True
    ).stdout
    commands = re.findall(r"^    ([a-z][a-z-]+)(?:\s{2,}\S|$)", shown, re.MULTILINE)
    assert "probe" in commands
    assert "check-config" in commands  # a long name: its help on the next line
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n\n", 2)[1]
    for command in commands:
        assert f"| `headlined {command}" in table, command
