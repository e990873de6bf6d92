"""Building the .deb with packaging/build-deb, installing it on this machine, and putting the
machine back as it was found: shared by the tests that install the package for real.

They need root and change the machine, so `require_installable` skips them (fails them under
CI=true) before anything has changed, and `machine_restored` purges the package afterwards
and removes the user, group and directories it made, even when the test failed.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "packaging" / "build-deb"
CONFFILE = Path("/etc/headlined/headlined.yaml")
STATE = Path("/var/lib/headlined")
VENV = Path("/opt/headlined/venv")
# A daemon's environment, not this test's (no venv, pyenv or NOTIFY_SOCKET of ours).
SERVICE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(STATE)}
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def version() -> str:
    """The version in pyproject.toml, which the package carries."""
    with (REPO / "pyproject.toml").open("rb") as f:
        value: str = tomllib.load(f)["project"]["version"]
    return value


def unavailable(reason: str) -> NoReturn:
    """Skip; in CI (CI=true) fail instead: nothing may skip there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI=true nothing may skip: {reason}")
    pytest.skip(reason)


def tool(name: str) -> str:
    """The system's ``name`` (looked up on the daemon's PATH: no venv or pyenv shims)."""
    path = shutil.which(name, path=SERVICE_ENV["PATH"])
    if path is None:
        unavailable(f"{name} is missing")
    return path


def run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run ``argv`` to completion; its stdout, or a failure that shows everything it printed."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,  # a dpkg conffile prompt must fail, not hang
    )
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def apt_get(*args: str) -> str:
    """``apt-get ARGS``, waiting for the dpkg lock rather than failing on it."""
    return run([tool("apt-get"), "-o", "DPkg::Lock::Timeout=120", *args], timeout=300, env=APT_ENV)


def installed() -> bool:
    """Whether dpkg knows headlined in any state but not-installed (config-files counts)."""
    result = subprocess.run(
        [tool("dpkg-query"), "-W", "-f", "${db:Status-Status}", "headlined"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout != "not-installed"


def exists(path: Path) -> bool:
    """Whether anything is at ``path``, a dangling symlink included."""
    return path.exists() or path.is_symlink()


def require_installable(*tools: str) -> None:
    """Skip (fail in CI) unless this test may install headlined here and has ``tools``.

    Called before anything on the machine changes. Outside CI it never replaces (and then
    purges) a headlined someone installed on purpose.
    """
    if os.geteuid() != 0:
        unavailable("installs a .deb on this machine: needs root")
    for name in ("apt-get", "dpkg-query", *tools):
        tool(name)
    if installed() and os.environ.get("CI") != "true":
        pytest.skip("headlined is installed on this machine already: apt-get purge it first")


def build(out_dir: Path) -> Path:
    """packaging/build-deb into ``out_dir``; the .deb it reports, named as Debian names it.

    Not root, build-deb cannot apt-install what it needs: then this skips (fails in CI).
    """
    result = subprocess.run(
        [str(BUILD_DEB), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    missing = re.search(r"^build-deb: missing .*", result.stderr, re.MULTILINE)
    if result.returncode != 0 and missing and os.geteuid() != 0:
        unavailable(missing[0])
    assert result.returncode == 0, f"build-deb exited {result.returncode}:\n{result.stderr}"
    deb = Path(result.stdout.strip().splitlines()[-1])
    arch = run([tool("dpkg"), "--print-architecture"]).strip()
    assert deb == out_dir / f"headlined_{version()}_{arch}.deb"
    return deb


def _user_exists() -> bool:
    return any(u.pw_name == "headlined" for u in pwd.getpwall())


def _group_exists() -> bool:
    return any(g.gr_name == "headlined" for g in grp.getgrall())


@contextlib.contextmanager
def machine_restored() -> Iterator[None]:
    """Whatever happens inside, leave headlined purged and the machine as it was on entry.

    postrm keeps /var/lib/headlined and the headlined user on purpose (captured data; Debian
    leaves system users in place): they are removed here if they were not there before. So are
    the package's own trees, in case a broken postrm leaves them.
    """
    user_before = _user_exists()
    group_before = _group_exists()
    state_before = STATE.exists()
    leftovers = [path for path in (VENV.parent, CONFFILE.parent) if not exists(path)]
    try:
        yield
    finally:
        if installed():
            subprocess.run(
                [tool("apt-get"), "purge", "-y", "headlined"],
                env=APT_ENV,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        for path in leftovers if state_before else [*leftovers, STATE]:
            shutil.rmtree(path, ignore_errors=True)
        if not user_before and _user_exists():
            subprocess.run([tool("userdel"), "headlined"], capture_output=True, check=False)
        if not group_before and _group_exists():
            subprocess.run([tool("groupdel"), "headlined"], capture_output=True, check=False)
