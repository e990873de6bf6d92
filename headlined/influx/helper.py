"""``headlined-inspect``: reads InfluxDB's files for the daemon and streams them back.

Answers ``discover``, ``export`` and ``wal_scan`` on stdin/stdout until stdin ends; runs the
influx_inspect of ``$HEADLINED_INFLUX_INSPECT``, never one the client names. On a Unix socket
(systemd's, or a local child's socketpair) an ``export`` may come with the client's pipe,
which influx_inspect then writes into itself. Imports only the standard library and pure
modules, to start fast. See docs/exporter.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import selectors
import shutil
import socket
import stat
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import BinaryIO

from headlined.influx import datadir
from headlined.influx.protocol import (
    CHECKSUM_PREFIX,
    DATA,
    FAILURE,
    MAX_FRAME,
    MAX_REQUEST,
    RESULT,
    STDERR,
    ProtocolError,
    Request,
    decode_request,
    frame_header,
    parse_rfc3339,
    write_frame,
    write_json,
)
from headlined.influx.spawn import BINARY_ENV

READ_SIZE = 1 << 20
MAX_FDS = 4  # descriptors taken with one request (one is used; more are closed)
# F_SETPIPE_SZ (Linux): a 1 MiB pipe means 16x fewer reads and frames than the 64 KiB default.
_F_SETPIPE_SZ = 1031


class InspectError(Exception):
    """influx_inspect is missing or is not influx_inspect."""


class Inspect:
    """The influx_inspect binary, found and probed (``-lponly`` from 1.8.3) on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._probed: tuple[str, bool] | None = None
        self._lock = threading.Lock()  # one probe at a time: a second caller waits for it

    def probe(self) -> tuple[str, bool]:
        """(path, has -lponly); InspectError if it cannot be used."""
        with self._lock:
            return self._probe()

    def _probe(self) -> tuple[str, bool]:
        if self._probed is None:
            path = shutil.which(self.name)
            if path is None:
                raise InspectError(
                    f"influx_inspect not found: {self.name!r} is not on PATH "
                    f"(influx.inspect, or {BINARY_ENV} for headlined-inspect.socket)"
                )
            try:
                probe = subprocess.run(
                    [path, "export", "-h"], capture_output=True, text=True, timeout=30, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise InspectError(f"{path} export -h failed: {exc}") from None
            usage = probe.stdout + probe.stderr
            if "-datadir" not in usage:
                raise InspectError(f"{path} does not look like influx_inspect: {usage[:200]!r}")
            self._probed = (path, "-lponly" in usage)
        return self._probed


class _Requests:
    """Request lines from the client, each with the descriptors sent along with it: a Unix
    socket carries them (SCM_RIGHTS), a pipe none."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._sock: socket.socket | None = None
        if stat.S_ISSOCK(os.fstat(inp.fileno()).st_mode):
            # Read by recvmsg, never through inp's buffer: a plain read drops descriptors.
            self._sock = socket.socket(fileno=os.dup(inp.fileno()))
        self._buffer = b""

    def fileno(self) -> int:
        """The connection's descriptor (readable mid-export: the client closed it)."""
        return self._inp.fileno()

    def next(self) -> tuple[bytes, list[int]]:
        """The next line (at most MAX_REQUEST + 1 bytes; empty at the end) and the
        descriptors that came with it, which the caller closes."""
        if self._sock is None:
            return self._inp.readline(MAX_REQUEST + 1), []
        fds: list[int] = []
        while b"\n" not in self._buffer and len(self._buffer) <= MAX_REQUEST:
            data, received, _, _ = socket.recv_fds(self._sock, MAX_REQUEST + 1, MAX_FDS)
            fds += received
            if not data:
                break
            self._buffer += data
        end = self._buffer.find(b"\n")
        cut = end + 1 if end >= 0 else MAX_REQUEST + 1
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line, fds


def serve(inp: BinaryIO, out: BinaryIO, inspect: Inspect) -> None:
    """Answer requests from ``inp`` on ``out`` until ``inp`` ends."""
    requests = _Requests(inp)
    while True:
        line, fds = requests.next()
        try:
            if not line:
                return
            _answer(line, fds, requests.fileno(), out, inspect)
        finally:
            for fd in fds:
                os.close(fd)


def _answer(line: bytes, fds: list[int], client: int, out: BinaryIO, inspect: Inspect) -> None:
    """Answer one request (``fds``: the descriptors that came with it, closed by the caller
    once the reply is written: the client's pipe then ends as influx_inspect's copy has)."""
    try:
        request = decode_request(line)
        pipe = _passed_pipe(request, fds)
    except ProtocolError as exc:
        write_json(out, FAILURE, {"kind": "bad_request", "error": str(exc)})
        return
    try:
        if request.op == "discover":
            found = datadir.discover(
                Path(request.data_dir),
                Path(request.wal_dir),
                list(request.databases),
                Path(request.meta_dir) if request.meta_dir else None,
            )
            write_json(out, RESULT, found.to_json())
        elif request.op == "export":
            # The blocks are checked while influx_inspect exports (the files are read
            # twice at once, from the page cache), not after it.
            check = _BlockCheck(request)
            code = _export(request, inspect, client, out, pipe=pipe)
            if code == 0:
                for bad in check.result():
                    write_frame(out, STDERR, bad)
                out.flush()
            write_json(out, RESULT, {"exit": code})
        else:
            scanner = datadir.WalScanner()
            code = _export(request, inspect, client, out, scanner=scanner)
            scan = scanner.finish()
            write_json(
                out, RESULT, {"exit": code, "scan": None if scan is None else scan.to_json()}
            )
    except datadir.DataDirError as exc:
        write_json(out, FAILURE, {"kind": exc.kind, "error": str(exc)})
    except (InspectError, datadir.InfluxFilesError) as exc:
        write_json(out, FAILURE, {"kind": "inspect", "error": str(exc)})


def _passed_pipe(request: Request, fds: list[int]) -> int | None:
    """The pipe an export request came with (None if it asks for D frames); ProtocolError
    if it says it came with one and did not, or with something else."""
    if not request.passed_pipe:
        return None
    if len(fds) != 1:
        raise ProtocolError(f"passed_pipe: {len(fds)} descriptors came with the request")
    if not stat.S_ISFIFO(os.fstat(fds[0]).st_mode):
        raise ProtocolError("passed_pipe: the descriptor is not a pipe")
    return fds[0]


class _BlockCheck:
    """The chunk's TSM blocks whose checksum does not match, as stderr lines, found on a
    thread of their own (started at once)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._lines: list[bytes] = []
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="block-check", daemon=True)
        self._thread.start()

    def result(self) -> list[bytes]:
        """The lines (waits for the check to end)."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._lines

    def _run(self) -> None:
        try:
            self._lines = _bad_blocks(self._request)
        except BaseException as exc:  # noqa: BLE001 - raised again by result()
            self._failure = exc


def _bad_blocks(request: Request) -> list[bytes]:
    """The stderr lines naming the chunk's blocks whose checksum does not match."""
    low = parse_rfc3339(request.start) if request.start else -(2**63)
    high = parse_rfc3339(request.end) if request.end else 2**63 - 1
    rp_dir = Path(request.data_dir) / request.database / request.retention_policy
    if not rp_dir.is_dir():
        return []
    lines = []
    for path in sorted(rp_dir.glob("*/*.tsm")):
        try:
            # One pass over the index: a file outside the range has no block wanted.
            bad = datadir.bad_checksums(path, low, high)
        except datadir.InfluxFilesError:
            continue  # unreadable: influx_inspect has said so already
        for block in bad:
            key = json.dumps(block.key.decode("utf-8", "replace"), ensure_ascii=False)
            line = f"{CHECKSUM_PREFIX} {key} in {path} (times {block.first_ns}..{block.last_ns})\n"
            lines.append(line.encode())
    return lines


def _argv(request: Request, path: str, lponly: bool, data_dir: str, fd: int) -> list[str]:
    argv = [path, "export", "-datadir", data_dir, "-waldir", request.wal_dir]
    argv += ["-database", request.database, "-retention", request.retention_policy]
    if request.start:
        argv += ["-start", request.start]
    if request.end:
        argv += ["-end", request.end]
    # influx_inspect opens -out itself; /proc/self/fd/N reopens the pipe it inherited.
    argv += ["-out", f"/proc/self/fd/{fd}"]
    if lponly:
        argv.append("-lponly")
    return argv


def inspect_env() -> dict[str, str]:
    """influx_inspect's environment: this process's, with GOMAXPROCS one less than the cores
    it may run on (at least 1) unless it is set already.

    What influx_inspect writes goes to headlined's converter on this machine, a CPU-bound
    stage of its own. With Go's default (every core) the two contend and influx_inspect's
    parallel garbage collection costs more than it gains: measured into a converter on two
    cores (bench/RESULTS.md, 12-04), 10M lines 1.41 -> 1.19 s, influx_inspect's CPU
    1.33 -> 1.19 s."""
    env = dict(os.environ)
    if "GOMAXPROCS" not in env:
        env["GOMAXPROCS"] = str(max(1, len(os.sched_getaffinity(0)) - 1))
    return env


def _export(
    request: Request,
    inspect: Inspect,
    client: int,
    out: BinaryIO,
    *,
    scanner: datadir.WalScanner | None = None,
    pipe: int | None = None,
) -> int:
    """Run influx_inspect; stream its output back, or, given ``scanner``, the WAL's into it,
    or let it write into the client's ``pipe`` (the caller's to close)."""
    path, lponly = inspect.probe()
    with contextlib.ExitStack() as stack:
        # A data dir without TSM files makes influx_inspect read the WAL alone; the WAL dir
        # itself is one (and needs no temporary folder).
        data_dir = request.data_dir if scanner is None else request.wal_dir
        read_end: int | None = None
        if pipe is None:
            read_end, write_end = os.pipe()
            stack.callback(os.close, read_end)
            with contextlib.suppress(OSError):  # a smaller pipe still works
                fcntl.fcntl(read_end, _F_SETPIPE_SZ, READ_SIZE)
        else:
            write_end = pipe
        try:
            proc = subprocess.Popen(
                _argv(request, path, lponly, data_dir, write_end),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
                env=inspect_env(),
            )
        except OSError as exc:
            raise InspectError(f"cannot start {path}: {exc}") from None
        finally:
            if pipe is None:
                os.close(write_end)  # the child's copy is the only writer: EOF when it exits
        try:
            _pump(proc, read_end, client, out, scanner)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return proc.wait()


def _pump(
    proc: subprocess.Popen[bytes],
    data_fd: int | None,
    client: int,
    out: BinaryIO,
    scanner: datadir.WalScanner | None,
) -> None:
    """influx_inspect's output (``data_fd``, None when it writes into the client's pipe) and
    stderr into frames, or the output into ``scanner``, until both end."""
    if proc.stderr is None:
        raise InspectError("influx_inspect was started without a stderr pipe")
    err_fd = proc.stderr.fileno()
    selector = selectors.DefaultSelector()
    if data_fd is not None:
        selector.register(data_fd, selectors.EVENT_READ, DATA)
    selector.register(err_fd, selectors.EVENT_READ, STDERR)
    # The client says nothing until the reply is complete: its side becoming readable means it
    # closed the connection (it stopped, or gave up on this export), even while influx_inspect
    # is silent; then influx_inspect is stopped at once rather than run on for nobody.
    selector.register(client, selectors.EVENT_READ, None)
    splicing = scanner is None and _can_splice(out)
    try:
        while len(selector.get_map()) > 1:
            for key, _ in selector.select():
                if key.data is None:
                    raise BrokenPipeError("the client closed the connection mid-export")
                if splicing and key.data == DATA and _splice_frame(key.fd, out):
                    continue
                chunk = os.read(key.fd, READ_SIZE)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.data == STDERR or scanner is None:
                    write_frame(out, key.data, chunk)
                    out.flush()
                else:
                    scanner.feed(chunk)
    finally:
        selector.close()


def _can_splice(out: BinaryIO) -> bool:
    """Whether ``out`` is a pipe or a socket, which splice(2) can move a pipe's bytes into."""
    try:
        mode = os.fstat(out.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return hasattr(os, "splice") and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))


def _splice_frame(data_fd: int, out: BinaryIO) -> bool:
    """One ``D`` frame of what the pipe ``data_fd`` holds, its bytes moved into ``out`` by
    splice(2), never copied through this process; False at the pipe's end (a read tells)."""
    (ready,) = struct.unpack("i", fcntl.ioctl(data_fd, termios.FIONREAD, b"\0\0\0\0"))
    if ready <= 0:
        return False
    size = min(ready, MAX_FRAME)
    out.write(frame_header(DATA, size))
    out.flush()
    out_fd = out.fileno()
    while size:  # the bytes are in the pipe already: only a full `out` makes this wait
        size -= os.splice(data_fd, out_fd, size)
    return True


def _probe_quietly(inspect: Inspect) -> None:
    with contextlib.suppress(InspectError):
        inspect.probe()


def main() -> int:
    """Entry point of ``headlined-inspect`` (stdin/stdout: the connection)."""
    inspect = Inspect(os.environ.get(BINARY_ENV) or "influx_inspect")
    # Probed now, while the client still gets ready, not at its first export; on a thread, as
    # the first request is mostly a discovery, which needs no influx_inspect (it waits for
    # nothing but the CPU). A failure is told in reply to the requests that need it.
    threading.Thread(target=_probe_quietly, args=(inspect,), name="probe", daemon=True).start()
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, inspect)
    except BrokenPipeError:
        return 0  # the daemon closed the connection mid-reply: it stopped or gave up
    except ProtocolError as exc:
        print(f"headlined-inspect: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
