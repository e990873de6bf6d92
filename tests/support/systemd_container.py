"""A real systemd (Debian 12's 252) booted in a systemd-nspawn container over this machine's /.

These machines do not run systemd as PID 1, yet the shipped unit, the installed .deb and
Debian's own influxdb.service are meant to be tested together as a user's server runs them.
`booted_container` follows shared/spec/REAL-SYSTEMD.md: `--volatile=yes` gives the container
an empty tmpfs root with the host's /usr read-only, a fresh /etc and /var, and the host's
network; the host's /etc/passwd, /etc/group, /etc/headlined and /opt/headlined are bound in
read-only. Commands run inside through `nsenter` into the container's PID 1.

Every unit that a preset would enable at first boot is disabled instead (a bound preset file),
so nothing starts but systemd's own static units: a test starts what it tests itself, the way
an admin runs `systemctl start`, and an influxdb.service that would fail at boot (its
/var/lib/influxdb does not exist yet) cannot leave the system degraded.

`ContainerInflux` runs Debian's influxdb.service in such a container with a test config, so a
test can write to it from the host and look at its files as the container's services see them.
Needs root; everything it made is gone once the context manager exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from tests.support.deb_package import tool, unavailable
from tests.support.influxdb_server import (
    InfluxError,
    RunningInflux,
    edit_config,
    free_ports,
    reporting_off,
    toml_string,
)

BOOT_TIMEOUT_S = 120.0  # the recipe measured ~20 s; a loaded CI machine gets slack
POWEROFF_TIMEOUT_S = 60.0
KILL_TIMEOUT_S = 15.0
CGROUP_RELEASE_TIMEOUT_S = 10.0
CONSOLE_TAIL_LINES = 60
# Commands inside get a clean environment: the test's PATH (a venv, pyenv shims) and
# NOTIFY_SOCKET mean nothing in the container.
INSIDE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
PRESET = PurePosixPath("/etc/systemd/system-preset/00-headlined-tests.preset")
# What nspawn creates in the host's /run and leaves behind, empty, when it ends.
NSPAWN_RUNTIME = (
    Path("/run/systemd/nspawn/propagate"),
    Path("/run/systemd/nspawn"),
    Path("/run/systemd/nspawn-root"),
)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

INFLUX_UNIT = Path("/lib/systemd/system/influxdb.service")
INFLUX_CONF = PurePosixPath("/etc/influxdb/influxdb.conf")
INFLUX_ROOT = PurePosixPath("/var/lib/influxdb")
INFLUX_META_DIR = INFLUX_ROOT / "meta"
INFLUX_DATA_DIR = INFLUX_ROOT / "data"
INFLUX_WAL_DIR = INFLUX_ROOT / "wal"
INFLUX_START_TIMEOUT_S = 60.0


class ContainerError(RuntimeError):
    """The container did not boot, or a command inside it failed."""


@dataclass(frozen=True)
class Bind:
    """A host path bound read-only into the container, at ``target`` or at the same path."""

    source: Path
    target: PurePosixPath | None = None

    def option(self) -> str:
        """The ``--bind-ro=`` option for systemd-nspawn."""
        if self.target is None:
            return f"--bind-ro={self.source}"
        return f"--bind-ro={self.source}:{self.target}"


BASE_BINDS = (
    # The same users and groups as on the host, so the package's user exists inside.
    Bind(Path("/etc/passwd")),
    Bind(Path("/etc/group")),
    # What the .deb installed outside /usr (the container sees the host's /usr anyway).
    Bind(Path("/etc/headlined")),
    Bind(Path("/opt/headlined")),
)


def require_tools() -> None:
    """Skip (fail under CI=true) unless this process can boot a container: root and tools."""
    if os.geteuid() != 0:
        unavailable("boots a systemd-nspawn container: needs root")
    for name in ("systemd-nspawn", "nsenter", "setpriv"):
        tool(name)


class Container:
    """A booted container: commands inside it, and what its systemd says."""

    def __init__(self, machine: str, nspawn: subprocess.Popen[bytes], console: Path) -> None:
        """Wrap a started ``systemd-nspawn`` process; `wait_booted` finds its PID 1."""
        self.machine = machine
        self.nspawn = nspawn
        self.console = console
        self._init_pid: int | None = None

    @property
    def init_pid(self) -> int:
        """PID (on the host) of the container's systemd."""
        if self._init_pid is None:
            raise ContainerError(f"{self.machine} has no PID 1 yet")
        return self._init_pid

    def console_tail(self) -> str:
        """The end of what the container printed on its console, for failure messages."""
        text = ANSI_ESCAPE.sub("", self.console.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-CONSOLE_TAIL_LINES:]) or "(no console output)"

    def _find_init(self) -> int | None:
        # The container's PID 1 is a child of nspawn; so, while it sets the container up, is a
        # helper process. Only the child that is PID 1 in its own PID namespace is the init.
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rpartition(")")[2].split()[1])
                if ppid != self.nspawn.pid:
                    continue
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "1":
                        return int(entry.name)
        return None

    def wait_booted(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Until ``systemctl is-system-running`` says running or degraded."""
        deadline = time.monotonic() + timeout
        state = "(no PID 1 yet)"
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited {self.nspawn.returncode} while booting:\n"
                    f"{self.console_tail()}"
                )
            if self._init_pid is None:
                self._init_pid = self._find_init()
            if self._init_pid is not None:
                # Before systemd listens, this fails to connect (or hangs): ask again.
                try:
                    result = self.run("systemctl", "is-system-running", check=False, timeout=10)
                except subprocess.TimeoutExpired:
                    state = "(systemctl is-system-running timed out)"
                else:
                    state = result.stdout.strip() or result.stderr.strip()
                    if state in ("running", "degraded"):
                        return
            time.sleep(0.25)
        raise ContainerError(
            f"{self.machine} did not boot within {timeout:g} s (last state: {state}):\n"
            f"{self.console_tail()}"
        )

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container as root (all its namespaces, its root and cwd)."""
        result = subprocess.run(
            [tool("nsenter"), "-t", str(self.init_pid), "-a", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=INSIDE_ENV,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"{list(argv)} exited {result.returncode} in {self.machine}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def run_as(
        self, user: str, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container as ``user`` with its groups.

        setpriv rather than runuser: runuser needs PAM, whose /etc/pam.d a --volatile=yes
        container does not have ("runuser: Critical error - immediate abort").
        """
        setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return self.run(*setpriv, *argv, check=check, timeout=timeout)

    def systemctl(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` inside; the timeout covers a unit's own start timeout."""
        return self.run("systemctl", *args, check=check, timeout=timeout)

    def journal(self, unit: str, priority: str | None = None) -> str:
        """``journalctl -u UNIT [-p PRIORITY]``: one line per entry, empty when none."""
        argv = ["journalctl", "-u", unit, "--no-pager", "--quiet", "-o", "short-iso"]
        if priority is not None:
            argv += ["-p", priority]
        return self.run(*argv).stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show UNIT -p PROP...`` as a dict (systemctl's formatting of values)."""
        out = self.systemctl("show", unit, f"--property={','.join(props)}").stdout
        values = dict(line.partition("=")[::2] for line in out.splitlines() if line)
        missing = set(props) - set(values)
        if missing:
            raise ContainerError(f"systemctl show {unit} lacks {sorted(missing)}:\n{out}")
        return values

    def host_path(self, path: PurePosixPath) -> Path:
        """Where the host sees the container's ``path`` (through its PID 1's root)."""
        return Path(f"/proc/{self.init_pid}/root") / path.relative_to("/")

    def power_off(self) -> None:
        """Shut the container down; kill it if it does not end within the bounds."""
        if self.nspawn.poll() is None and self._init_pid is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, ContainerError):
                self.systemctl("poweroff", check=False, timeout=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.nspawn.wait(timeout=POWEROFF_TIMEOUT_S)
            return
        # SIGKILL to a PID namespace's init ends every process in it; then nspawn itself.
        init = self._init_pid if self._init_pid is not None else self._find_init()
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        self.nspawn.kill()
        self.nspawn.wait(timeout=KILL_TIMEOUT_S)


def _own_cgroup_dirs() -> list[Path]:
    """This process's directory in the unified and in systemd's named v1 cgroup hierarchy.

    nspawn --keep-unit splits the cgroup it runs in into payload/ and supervisor/ and leaves
    them behind; so each container gets a cgroup of its own, which two containers booted at
    once could not share, and which is removed afterwards.
    """
    mounts: dict[str, tuple[Path, PurePosixPath]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        fstype, _source, options = after.split()[:3]
        if fstype == "cgroup2":
            mounts[""] = (Path(fields[4]), PurePosixPath(fields[3]))
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts["name=systemd"] = (Path(fields[4]), PurePosixPath(fields[3]))
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            mount_point, mount_root = mounts[controllers]
            dirs.append(mount_point / PurePosixPath(path).relative_to(mount_root))
    if not dirs:
        raise ContainerError("no unified or name=systemd cgroup hierarchy: nspawn needs one")
    return dirs


def _remove_cgroup(top: Path) -> None:
    """rmdir ``top`` and the cgroups below it, retrying while the kernel still releases them."""
    deadline = time.monotonic() + CGROUP_RELEASE_TIMEOUT_S
    while top.exists():
        try:
            for parent, children, _files in os.walk(top, topdown=False):
                for child in children:
                    (Path(parent) / child).rmdir()
            top.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def booted_container(name: str, workdir: Path, binds: Sequence[Bind] = ()) -> Iterator[Container]:
    """Boot systemd in a container named ``NAME-<pid>``, with `BASE_BINDS` and ``binds``.

    ``workdir`` (on the host) keeps the console log and the preset file. On exit the
    container is powered off, or killed when that takes too long, even when the test failed,
    and its cgroups and nspawn's leftovers in /run are removed.
    """
    require_tools()
    machine = f"{name}-{os.getpid()}"
    console = workdir / f"{machine}.console"
    preset = workdir / f"{machine}.preset"
    preset.write_text("disable *\n")  # first boot enables nothing: tests start what they test
    runtime_before = {path for path in NSPAWN_RUNTIME if path.exists()}
    cgroups = [parent / f"nspawn-{machine}" for parent in _own_cgroup_dirs()]
    argv = [
        tool("systemd-nspawn"),
        "--directory=/",
        "--volatile=yes",
        "--register=no",  # no systemd on the host to register with
        "--keep-unit",
        f"--machine={machine}",
        *(bind.option() for bind in (*BASE_BINDS, *binds, Bind(preset, PRESET))),
        "--boot",
        "--",
        "systemd.mask=systemd-firstboot.service",  # it would wait for answers on the console
    ]
    # The shell moves itself into the container's cgroups, then becomes nspawn: so nspawn is
    # there from its first instruction, with no window in which it splits the host's cgroup.
    enter = 'while [ "$1" != -- ]; do echo $$ >"$1" || exit 1; shift; done; shift; exec "$@"'
    procs = [str(cgroup / "cgroup.procs") for cgroup in cgroups]
    try:
        for cgroup in cgroups:
            cgroup.mkdir()
        with console.open("wb") as out:
            nspawn = subprocess.Popen(
                ["/bin/sh", "-c", enter, "sh", *procs, "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        container = Container(machine, nspawn, console)
        try:
            container.wait_booted()
            yield container
        finally:
            container.power_off()
    finally:
        for cgroup in cgroups:
            _remove_cgroup(cgroup)
        for path in NSPAWN_RUNTIME:
            if path not in runtime_before:
                with contextlib.suppress(OSError):  # not empty: another container uses it
                    path.rmdir()


class ContainerInflux(RunningInflux):
    """Debian's influxdb.service in a booted container, with a test config; reached from the
    host over HTTP and RPC on loopback, its files seen through the container's root.

    Make it with `configure` before booting and pass `bind` to `booted_container` (the config
    must be in place when the service starts), then `start` it in the booted container.
    Inside the container, its files are at INFLUX_META_DIR, INFLUX_DATA_DIR, INFLUX_WAL_DIR.
    """

    def __init__(self, config: Path, http_port: int, rpc_port: int) -> None:
        """Wrap a written config; `configure` is the way to make one."""
        self.config = config
        self.http_port = http_port
        self.rpc_port = rpc_port
        self._container: Container | None = None
        self._client: httpx.Client | None = None

    @classmethod
    def configure(cls, workdir: Path) -> ContainerInflux:
        """Write a config to ``workdir``: Debian's, with HTTP and RPC on free loopback ports,
        no usage reporting and no `_internal` monitor database (it would write in the
        background and show up in an export of every database)."""
        debian = subprocess.run(
            [tool("influxd"), "config", "-config", str(INFLUX_CONF)],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        rpc_port, http_port = free_ports(2)
        settings = {
            **reporting_off(debian),
            ("", "bind-address"): toml_string(f"127.0.0.1:{rpc_port}"),
            ("http", "bind-address"): toml_string(f"127.0.0.1:{http_port}"),
            ("monitor", "store-enabled"): "false",
            # Debian's paths already; set so that the INFLUX_*_DIR constants hold for sure.
            ("meta", "dir"): toml_string(str(INFLUX_META_DIR)),
            ("data", "dir"): toml_string(str(INFLUX_DATA_DIR)),
            ("data", "wal-dir"): toml_string(str(INFLUX_WAL_DIR)),
        }
        config = workdir / "influxdb.conf"
        config.write_text(edit_config(debian, settings), encoding="utf-8")
        return cls(config, http_port, rpc_port)

    @property
    def bind(self) -> Bind:
        """The config, bound over Debian's /etc/influxdb/influxdb.conf in the container."""
        return Bind(self.config, INFLUX_CONF)

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API, the same from the host and from inside the container."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def rpc_address(self) -> str:
        """host:port of the RPC service that `influxd backup` talks to."""
        return f"127.0.0.1:{self.rpc_port}"

    @property
    def container(self) -> Container:
        """The container the service runs in; only after `start`."""
        if self._container is None:
            raise InfluxError("influxdb.service is not started")
        return self._container

    @property
    def client(self) -> httpx.Client:
        """HTTP client bound to `http_url`; only after `start`."""
        if self._client is None:
            raise InfluxError("influxdb.service is not started")
        return self._client

    @property
    def data_dir(self) -> Path:
        """The TSM files' directory, as the host sees it."""
        return self.container.host_path(INFLUX_DATA_DIR)

    @property
    def wal_dir(self) -> Path:
        """The WAL's directory, as the host sees it."""
        return self.container.host_path(INFLUX_WAL_DIR)

    def start(self, container: Container, timeout: float = INFLUX_START_TIMEOUT_S) -> None:
        """Make /var/lib/influxdb as the package's postinst does, start influxdb.service, and
        wait until GET /ping answers 204 from the host."""
        container.run("install", "-d", "-o", "influxdb", "-g", "influxdb", str(INFLUX_ROOT))
        container.systemctl("start", "influxdb.service")
        self._container = container
        self._client = httpx.Client(base_url=self.http_url, timeout=60.0)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if self._client.get("/ping").status_code == 204:
                    return
            if time.monotonic() > deadline:
                state = container.show("influxdb.service", "ActiveState", "Result")
                raise InfluxError(
                    f"influxdb.service did not answer /ping with 204 within {timeout:g} s "
                    f"({state}):\n{container.journal('influxdb.service')[-3000:]}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        """Close the HTTP client (the service ends with its container)."""
        if self._client is not None:
            self._client.close()
        self._client = None


def require_influxdb() -> None:
    """Skip (fail under CI=true) unless Debian's influxdb package is installed."""
    tool("influxd")
    if not INFLUX_UNIT.exists():
        unavailable(f"{INFLUX_UNIT} is missing: apt-get install influxdb")
