"""The .deb from packaging/build-deb, checked by lintian and installed for real on this machine.

lintian finds no error in it (what a virtualenv in /opt must keep is overridden, with the
reason, in packaging/deb/lintian-overrides), and its manual page describes every command.
It installs, runs as the service user, keeps an edited conffile across a reinstall, and purges
clean: nothing left but /var/lib/headlined and the headlined user, which postrm keeps on
purpose (captured data; Debian leaves system users in place). Installing needs root; the
machine is put back as it was found (package purged, and the user and state directory removed
if this test made them).
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from headlined import cli, config
from tests.support.deb_package import (
    CONFFILE,
    REPO,
    SERVICE_ENV,
    STATE,
    VENV,
    apt_get,
    exists,
    machine_restored,
    require_installable,
    run,
    tool,
    version,
)

SHIPPED_CONFIG = REPO / "packaging" / "deb" / "headlined.yaml"
MANUAL_PAGE = REPO / "packaging" / "deb" / "headlined.1"
UNIT = Path("/lib/systemd/system/headlined.service")
PYC = "python3.*/site-packages/headlined/__pycache__/cli.*.pyc"  # under VENV/lib, by postinst
MAX_EXPOSURE = 1.5
# What dpkg -L cannot list but the maintainer scripts create: all of it must go on purge.
SCRIPT_MADE = tuple(
    Path(path.format(unit=unit, target=target))
    for unit, target in (
        ("headlined.service", "multi-user.target"),
        ("headlined-inspect.socket", "sockets.target"),
    )
    for path in (
        "/etc/systemd/system/{target}.wants/{unit}",
        "/etc/systemd/system/{unit}",  # the mask postrm sets on remove
        "/var/lib/systemd/deb-systemd-helper-enabled/{unit}.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/{target}.wants/{unit}",
        "/var/lib/systemd/deb-systemd-helper-masked/{unit}",
    )
)
SERVICES = (UNIT, UNIT.with_name("headlined-inspect@.service"))


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
    secrets = {"HEADLINE_TOKEN": "t0ken", "PG_PASSWORD": "pw", "S3_KEY_ID": "k", "S3_SECRET": "s"}
    loaded = config.load(examples, environ=secrets)
    assert [s.name for s in loaded.config.sources] == ["headline-a", "headline-b"]
    assert loaded.config.influx is not None
    assert loaded.config.influx.output_dir == STATE / "influx"
    assert loaded.config.lake is not None
    assert loaded.config.lake.warehouse == "s3://bucket/prefix"
    assert loaded.config.lake.interval == 300


def _page_text(page: Path) -> str:
    """The manual page's roff source as words: font escapes dropped, ``\\-`` as ``-``."""
    return re.sub(r"\\f[BIRP]", "", page.read_text()).replace("\\-", "-")


def test_manual_page_describes_every_command_and_option() -> None:
    """packaging/deb/headlined.1, written by hand, against the parser ``headlined`` runs.

    Each command has an entry under COMMANDS (and no other entry is there), which names each
    of its options and arguments; a new command or option fails here until it is described.
    """
    page = _page_text(MANUAL_PAGE)
    parser = cli.build_parser()
    assert "--version" in page
    section = page.split("\n.SH COMMANDS\n", 1)[1].split("\n.SH ", 1)[0]
    entries = dict(re.findall(r"^\.TP\n([a-z][a-z-]*)\b(.*?)(?=^\.TP\n|\Z)", section, re.M | re.S))
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(entries) == sorted(commands.choices), "COMMANDS in packaging/deb/headlined.1"
    for name, command in commands.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                assert any(o in entries[name] for o in action.option_strings), (name, action)
            else:
                assert str(action.metavar or action.dest) in entries[name], (name, action)


@pytest.mark.integration
@pytest.mark.slow
def test_deb_has_no_lintian_errors(built_deb: Callable[[], Path]) -> None:
    """``lintian`` reports no E: for the .deb (its W: lines are listed when it fails).

    Under CI=true a missing lintian fails this (scripts/test installs it). lintian's config
    files are ignored (--no-cfg), so a user's suppressed tags cannot hide anything.
    """
    lintian = tool("lintian")
    tool("dpkg-deb")
    deb = built_deb()
    options = ["--no-cfg", "--fail-on", "none", "--tag-display-limit", "0", "--show-overrides"]
    result = subprocess.run(
        [lintian, *options, str(deb)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"lintian exited {result.returncode}:\n{result.stderr}"
    lines = result.stdout.splitlines()
    errors = [line for line in lines if line.startswith("E: ")]
    warnings = [line for line in lines if line.startswith("W: ")]
    assert errors == [], "\n".join(["lintian errors:", *errors, "warnings:", *warnings])
    # Proof that lintian read the package and its overrides file: the overridden hints.
    assert any(line.startswith("O: headlined: dir-or-file-in-opt ") for line in lines), lines


def _package_paths(deb: Path) -> set[Path]:
    """Every path in the .deb's file system archive (directories too)."""
    with subprocess.Popen(
        [tool("dpkg-deb"), "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            paths = {Path(os.path.normpath("/" + member.name)) for member in tar}
    assert proc.returncode == 0
    return paths


def _check_converts(tmp_path: Path) -> None:
    """The converter's C extension was built for Debian's Python and is in the package."""
    source = tmp_path / "in.lp"
    source.write_text('m,site=a temp=21.5,ok=true,note="x y" 1700000000000000000\n')
    run(["/usr/bin/headlined", "convert", str(source), str(tmp_path / "converted")])
    rows = duckdb.connect().execute(
        "SELECT site, temp, ok, note FROM read_parquet(?)",
        [str(tmp_path / "converted" / "m" / "in.parquet")],
    )
    assert rows.fetchall() == [("a", 21.5, True, "x y")]


def _check_installed() -> None:
    """The command, the config, the unit, the user and the permissions, as installed."""
    assert run(["/usr/bin/headlined", "--version"]).strip() == f"headlined {version()}"
    run(["/usr/bin/headlined", "check-config", "-c", str(CONFFILE)])
    # md5sums shipped and nothing changed since: postinst's .pyc are not package files.
    assert run([tool("dpkg"), "--verify", "headlined"]) == ""
    assert any((VENV / "lib").glob(PYC))
    # What the README links to is beside it.
    doc = Path("/usr/share/doc/headlined")
    for linked in (
        "README.md",
        "docs/exporter.md",
        "bench/RESULTS.md",
        "etc/headlined.example.yaml",
        "etc/prometheus/headlined-alerts.yml",
    ):
        assert (doc / linked).is_file(), linked

    for unit in (UNIT, UNIT.with_name("headlined-inspect.socket")):
        verify = subprocess.run(
            [tool("systemd-analyze"), "verify", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
        assert "headlined" not in verify.stderr, verify.stderr
    for service in SERVICES:
        security = run(
            [tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(service)]
        )
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security)
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

    apt_get("install", "--reinstall", "-y", str(deb))
    assert CONFFILE.read_text() == expected
    assert sorted(p.name for p in CONFFILE.parent.iterdir()) == [CONFFILE.name]  # no .dpkg-*
    assert stat.S_IMODE(CONFFILE.stat().st_mode) == 0o640
    assert any((VENV / "lib").glob(PYC))  # prerm dropped them, postinst made them again
    run(["/usr/bin/headlined", "check-config", "-c", str(CONFFILE)])


@pytest.mark.integration
@pytest.mark.slow
def test_deb_installs_runs_reinstalls_and_purges_clean(
    tmp_path: Path, built_deb: Callable[[], Path]
) -> None:
    """Build, install, run as the service user, reinstall over an edited conffile, purge."""
    require_installable("dpkg-deb", "systemd-analyze")
    with machine_restored():
        deb = built_deb()
        in_package = _package_paths(deb)
        existed = {path for path in in_package if exists(path)}
        apt_get("install", "-y", str(deb))
        _check_installed()
        _check_converts(tmp_path)
        _check_runs_as_service_user(tmp_path)
        _check_conffile_survives_reinstall(deb)
        # Root running Python with -O writes .opt-1.pyc that no package knows of: the kind of
        # leftover purge must clean up too.
        run([str(VENV / "bin" / "python"), "-O", "-c", "import headlined.cli"])

        listed = {Path(line) for line in run([tool("dpkg"), "-L", "headlined"]).splitlines()}
        assert listed == in_package
        purged = apt_get("purge", "-y", "headlined")

        left = [p for p in (listed - existed) | set(SCRIPT_MADE) if exists(p)]
        assert left == [], left
        assert "/etc/headlined" not in run([tool("dpkg-statoverride"), "--list"])
        # Kept: the data, with a note saying where, and its owner.
        assert (STATE / "headlined.duckdb").exists()
        assert str(STATE) in purged
        pwd.getpwnam("headlined")
