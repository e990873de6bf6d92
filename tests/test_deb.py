"""The .deb from packaging/build-deb, installed for real on this machine.

It installs, runs as the service user, keeps an edited conffile across a reinstall, and purges
clean: nothing left but /var/lib/headlined and the headlined user, which postrm keeps on
purpose (captured data; Debian leaves system users in place). Needs root; the machine is put
back as it was found (package purged, and the user and state directory removed if this test
made them).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import time
import tomllib
from pathlib import Path
from typing import NoReturn

import duckdb
import pytest

from headlined import config

REPO = Path(__file__).resolve().parents[1]
BUILD_DEB = REPO / "packaging" / "build-deb"
SHIPPED_CONFIG = REPO / "packaging" / "deb" / "headlined.yaml"
CONFFILE = Path("/etc/headlined/headlined.yaml")
UNIT = Path("/lib/systemd/system/headlined.service")
STATE = Path("/var/lib/headlined")
VENV = Path("/opt/headlined/venv")
PYC = "python3.*/site-packages/headlined/__pycache__/cli.*.pyc"  # under VENV/lib, by postinst
MAX_EXPOSURE = 1.5
# What dpkg -L cannot list but the maintainer scripts create: all of it must go on purge.
SCRIPT_MADE = (
    Path("/etc/systemd/system/multi-user.target.wants/headlined.service"),
    Path("/etc/systemd/system/headlined.service"),  # the mask postrm sets on remove
    Path("/var/lib/systemd/deb-systemd-helper-enabled/headlined.service.dsh-also"),
    Path("/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/headlined.service"),
    Path("/var/lib/systemd/deb-systemd-helper-masked/headlined.service"),
)
# A daemon's environment, not this test's (no venv, pyenv or NOTIFY_SOCKET of ours).
SERVICE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(STATE)}
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _version() -> str:
    with (REPO / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def _uncommented_examples(text: str) -> str:
    """The shipped config with its commented-out examples switched on.

    An example starts with a commented top-level key (``#sources:``) and runs on while lines
    start with ``#`` and two spaces; prose comments (``# ...``) stay as they are.
    """
    out: list[str] = []
    in_example = False
    for line in text.splitlines():
        if re.match(r"#[a-z_]+:", line) or (in_example and line.startswith("#  ")):
            in_example = True
            out.append(line[1:])
            continue
        in_example = False
        if line != "sources: []":  # replaced by the example's sources
            out.append(line)
    return "\n".join(out) + "\n"


def test_shipped_config_and_its_examples_are_valid(tmp_path: Path) -> None:
    """The conffile passes as shipped, and so do the examples a user uncomments in it."""
    loaded = config.load(SHIPPED_CONFIG, environ={})
    assert loaded.config.sources == []
    assert loaded.config.state_dir == STATE
    assert loaded.config.influx is None

    examples = tmp_path / "headlined.yaml"
    examples.write_text(_uncommented_examples(SHIPPED_CONFIG.read_text()))
    loaded = config.load(examples, environ={"HEADLINE_TOKEN": "t0ken"})
    assert [s.name for s in loaded.config.sources] == ["headline-a", "headline-b"]
    assert loaded.config.influx is not None
    assert loaded.config.influx.output_dir == STATE / "influx"


def _unavailable(reason: str) -> NoReturn:
    """Skip; in CI (CI=true) fail instead: nothing may skip there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the .deb test: {reason}")
    pytest.skip(reason)


def _tool(name: str) -> str:
    """The system's ``name`` (looked up on the daemon's PATH: no venv or pyenv shims)."""
    path = shutil.which(name, path=SERVICE_ENV["PATH"])
    if path is None:
        _unavailable(f"{name} is missing")
    return path


def _run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> str:
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


def _apt_get(*args: str) -> str:
    """``apt-get ARGS``, waiting for the dpkg lock rather than failing on it."""
    return _run(
        [_tool("apt-get"), "-o", "DPkg::Lock::Timeout=120", *args], timeout=300, env=APT_ENV
    )


def _installed() -> bool:
    """Whether dpkg knows headlined in any state but not-installed (config-files counts)."""
    result = subprocess.run(
        [_tool("dpkg-query"), "-W", "-f", "${db:Status-Status}", "headlined"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout != "not-installed"


def _package_paths(deb: Path) -> set[Path]:
    """Every path in the .deb's file system archive (directories too)."""
    with subprocess.Popen(
        [_tool("dpkg-deb"), "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            paths = {Path(os.path.normpath("/" + member.name)) for member in tar}
    assert proc.returncode == 0
    return paths


def _exists(path: Path) -> bool:
    """Whether anything is at ``path``, a dangling symlink included."""
    return path.exists() or path.is_symlink()


def _build(tmp_path: Path) -> Path:
    """packaging/build-deb into ``tmp_path``; the .deb it reports, named as Debian names it."""
    out = _run([str(BUILD_DEB), str(tmp_path / "dist")], timeout=900)
    deb = Path(out.strip().splitlines()[-1])
    arch = _run([_tool("dpkg"), "--print-architecture"]).strip()
    assert deb == tmp_path / "dist" / f"headlined_{_version()}_{arch}.deb"
    return deb


def _check_converts(tmp_path: Path) -> None:
    """The converter's C extension was built for Debian's Python and is in the package."""
    source = tmp_path / "in.lp"
    source.write_text('m,site=a temp=21.5,ok=true,note="x y" 1700000000000000000\n')
    _run(["/usr/bin/headlined", "convert", str(source), str(tmp_path / "converted")])
    rows = duckdb.connect().execute(
        "SELECT site, temp, ok, note FROM read_parquet(?)",
        [str(tmp_path / "converted" / "m" / "in.parquet")],
    )
    assert rows.fetchall() == [("a", 21.5, True, "x y")]


def _check_installed() -> None:
    """The command, the config, the unit, the user and the permissions, as installed."""
    assert _run(["/usr/bin/headlined", "--version"]).strip() == f"headlined {_version()}"
    _run(["/usr/bin/headlined", "check-config", "-c", str(CONFFILE)])
    # md5sums shipped and nothing changed since: postinst's .pyc are not package files.
    assert _run([_tool("dpkg"), "--verify", "headlined"]) == ""
    assert any((VENV / "lib").glob(PYC))

    verify = subprocess.run(
        [_tool("systemd-analyze"), "verify", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "headlined" not in verify.stderr, verify.stderr
    security = _run(
        [_tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(UNIT)]
    )
    match = re.search(r"Overall exposure level for headlined\.service: (\d+\.\d+)", security)
    assert match, security
    assert float(match.group(1)) <= MAX_EXPOSURE, security

    user = pwd.getpwnam("headlined")
    assert user.pw_dir == str(STATE)
    assert user.pw_shell == "/usr/sbin/nologin"
    assert grp.getgrgid(user.pw_gid).gr_name == "headlined"
    for path, owner, mode in (
        (STATE, "headlined", 0o750),
        (CONFFILE.parent, "root", 0o750),
        (CONFFILE, "root", 0o640),
    ):
        info = path.stat()
        assert (pwd.getpwuid(info.st_uid).pw_name, info.st_gid) == (owner, user.pw_gid), path
        assert stat.S_IMODE(info.st_mode) == mode, path


def _check_runs_as_service_user(tmp_path: Path) -> None:
    """``headlined run`` as the headlined user, in the state directory, until SIGTERM.

    Popen(user=...) rather than runuser: runuser answers SIGTERM by passing it on and then
    SIGKILLing the daemon two seconds later, which would hide how the daemon itself exits.
    """
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["/usr/bin/headlined", "run", "-c", str(CONFFILE)],
            cwd=STATE,
            env=SERVICE_ENV,
            user="headlined",
            group="headlined",
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while '"started"' not in log.read_text():
                assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"no 'started':\n{log.read_text()}"
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (STATE / "headlined.duckdb").stat().st_uid == pwd.getpwnam("headlined").pw_uid


def _check_conffile_survives_reinstall(deb: Path) -> None:
    """An edited conffile is kept, silently, when the package is installed over itself.

    dpkg handles a reinstall as an upgrade to the same version: the same maintainer-script
    calls (prerm upgrade, postinst configure <version>) and the same conffile rule.
    """
    edited = CONFFILE.read_text().replace("log_level: info", "log_level: warning")
    assert edited != CONFFILE.read_text()
    CONFFILE.write_text(edited + "# edited by test_deb\n")
    expected = CONFFILE.read_text()

    _apt_get("install", "--reinstall", "-y", str(deb))
    assert CONFFILE.read_text() == expected
    assert sorted(p.name for p in CONFFILE.parent.iterdir()) == [CONFFILE.name]  # no .dpkg-*
    assert stat.S_IMODE(CONFFILE.stat().st_mode) == 0o640
    assert any((VENV / "lib").glob(PYC))  # prerm dropped them, postinst made them again
    _run(["/usr/bin/headlined", "check-config", "-c", str(CONFFILE)])


@pytest.mark.integration
@pytest.mark.slow
def test_deb_installs_runs_reinstalls_and_purges_clean(tmp_path: Path) -> None:
    """Build, install, run as the service user, reinstall over an edited conffile, purge."""
    if os.geteuid() != 0:
        _unavailable("installs a .deb on this machine: needs root")
    for tool in ("apt-get", "dpkg-deb", "systemd-analyze"):
        _tool(tool)  # skips (fails in CI) before anything on the machine has changed
    # Outside CI, never replace (and then purge) a headlined someone installed on purpose.
    if _installed() and os.environ.get("CI") != "true":
        pytest.skip("headlined is installed on this machine already: apt-get purge it first")
    user_before = any(u.pw_name == "headlined" for u in pwd.getpwall())
    group_before = any(g.gr_name == "headlined" for g in grp.getgrall())
    state_before = STATE.exists()
    # Only the package's own trees: if a broken postrm leaves them, the test still cleans up.
    leftovers = [path for path in (VENV.parent, CONFFILE.parent) if not _exists(path)]

    deb = _build(tmp_path)
    in_package = _package_paths(deb)
    existed = {path for path in in_package if _exists(path)}
    try:
        _apt_get("install", "-y", str(deb))
        _check_installed()
        _check_converts(tmp_path)
        _check_runs_as_service_user(tmp_path)
        _check_conffile_survives_reinstall(deb)
        # Root running Python with -O writes .opt-1.pyc that no package knows of: the kind of
        # leftover purge must clean up too.
        _run([str(VENV / "bin" / "python"), "-O", "-c", "import headlined.cli"])

        listed = {Path(line) for line in _run([_tool("dpkg"), "-L", "headlined"]).splitlines()}
        assert listed == in_package
        purged = _apt_get("purge", "-y", "headlined")

        left = [p for p in (listed - existed) | set(SCRIPT_MADE) if _exists(p)]
        assert left == [], left
        assert "/etc/headlined" not in _run([_tool("dpkg-statoverride"), "--list"])
        # Kept: the data, with a note saying where, and its owner.
        assert (STATE / "headlined.duckdb").exists()
        assert str(STATE) in purged
        pwd.getpwnam("headlined")
    finally:
        if _installed():
            subprocess.run(
                [_tool("apt-get"), "purge", "-y", "headlined"],
                env=APT_ENV,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        for path in leftovers if state_before else [*leftovers, STATE]:
            shutil.rmtree(path, ignore_errors=True)
        if not user_before and any(u.pw_name == "headlined" for u in pwd.getpwall()):
            subprocess.run([_tool("userdel"), "headlined"], capture_output=True, check=False)
        if not group_before and any(g.gr_name == "headlined" for g in grp.getgrall()):
            subprocess.run([_tool("groupdel"), "headlined"], capture_output=True, check=False)
