"""Structured logging: one event per line, on stdout, shaped for where stdout goes.

- under journald (``JOURNAL_STREAM`` names our stdout): JSON, each line prefixed with the
  sd-daemon priority (``<4>`` warning …) so ``journalctl -p warning`` filters correctly;
- on a terminal: structlog's readable colour output;
- anywhere else (a pipe, a file): plain JSON lines.

Secrets are removed at two depths: string values before rendering (so JSON escaping cannot
hide one), and the rendered line itself (so a secret inside a repr or traceback cannot slip by).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Literal, TextIO

# structlog.dev imports rich whenever it is installed (pyiceberg, for the lake, brings it), and
# rich its pretty-printing and pygments: about 0.1 s of every start-up (the CLI's, the
# daemon's), for tracebacks this module does not use (see configure). Hidden while structlog
# loads, then let go, so that whatever imports rich afterwards still gets it.
_HIDE_RICH = "rich" not in sys.modules
if _HIDE_RICH:
    sys.modules["rich"] = None  # type: ignore[assignment]  # None: `import rich` fails
try:
    import structlog
finally:
    if _HIDE_RICH:
        del sys.modules["rich"]

Mode = Literal["journal", "console", "json"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# sd-daemon(3) priorities, read by journald from a "<N>" line prefix.
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
REDACTED = "***"


class Redactor:
    """Knows the secret strings of the current config; replaced whole on reload."""

    def __init__(self) -> None:
        self._needles: tuple[str, ...] = ()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the secrets to hide, in every form a renderer may print them."""
        needles = set()
        for secret in secrets:
            if secret:
                needles.add(secret)
                needles.add(json.dumps(secret)[1:-1])
                needles.add(json.dumps(secret, ensure_ascii=False)[1:-1])
                needles.add(repr(secret)[1:-1])
        # Longest first, so a secret containing another is hidden whole.
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    def processor(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor: scrub every string in the event, however deeply nested."""
        for key, value in event.items():
            event[key] = self._scrub_value(value)
        return event

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {k: self._scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub_value(v) for v in value]
        return value


REDACTOR = Redactor()

Sink = Callable[[str, TextIO], None]
_SINK: Sink | None = None


@contextlib.contextmanager
def lines_through(sink: Sink) -> Iterator[None]:
    """Write every log line with ``sink(line, stream)`` meanwhile (e.g. above a progress bar)."""
    global _SINK  # noqa: PLW0603  one process-wide output, like sys.stdout itself
    previous, _SINK = _SINK, sink
    try:
        yield
    finally:
        _SINK = previous


class LineWriter:
    """The one place that does I/O: scrubs, prefixes and writes one line per event."""

    def __init__(self, stream: TextIO | None, prefix_priority: bool) -> None:
        self._stream = stream  # None: whatever sys.stdout is at the time of writing
        self._prefix = prefix_priority

    def _write(self, level: str, message: str) -> None:
        line = REDACTOR.scrub(message)
        if self._prefix:
            line = f"<{PRIORITY[level]}>{line}"
        stream = sys.stdout if self._stream is None else self._stream
        try:
            if _SINK is not None:
                _SINK(line, stream)
                return
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            # stdout gone (journald restarted, pipe closed): logging must not kill the daemon.
            pass

    def debug(self, message: str) -> None:
        """Write a debug line."""
        self._write("debug", message)

    def info(self, message: str) -> None:
        """Write an info line."""
        self._write("info", message)

    def warning(self, message: str) -> None:
        """Write a warning line."""
        self._write("warning", message)

    def error(self, message: str) -> None:
        """Write an error line."""
        self._write("error", message)

    def critical(self, message: str) -> None:
        """Write a critical line."""
        self._write("critical", message)

    msg = info
    exception = error


def detect_mode(stream: TextIO, environ: MutableMapping[str, str] | None = None) -> Mode:
    """journal if ``JOURNAL_STREAM`` is our stream's device:inode, console on a tty, else json."""
    env = os.environ if environ is None else environ
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return "json"
    journal = env.get("JOURNAL_STREAM", "")
    if journal:
        st = os.fstat(fd)
        if journal == f"{st.st_dev}:{st.st_ino}":
            return "journal"
    return "console" if stream.isatty() else "json"


class _ToStructlog(logging.Handler):
    """Carries library log records (httpx, asyncio) into the same structured stream."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        log.log(record.levelno, record.getMessage(), logger=record.name)


def configure(level: str = "info", stream: TextIO | None = None, mode: Mode | None = None) -> None:
    """Set up structlog (and route stdlib logging into it). Safe to call again on reload."""
    chosen = detect_mode(sys.stdout if stream is None else stream) if mode is None else mode
    renderer: structlog.typing.Processor
    if chosen == "console":
        # Time first, as on every other line a person reads.
        # Plain tracebacks, whichever of rich or better_exceptions is installed.
        renderer = structlog.dev.ConsoleRenderer(
            colors=True, timestamp_key="ts", exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.dict_tracebacks
            if chosen != "console"
            else structlog.processors.StackInfoRenderer(),
            REDACTOR.processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *_: LineWriter(stream, prefix_priority=chosen == "journal"),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [_ToStructlog()]
    root.setLevel(LEVELS[level])
    # httpx logs every request at INFO: that is our own fetch_summary's job.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get(name: str = "headlined") -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a component name."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
