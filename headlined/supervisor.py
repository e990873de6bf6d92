"""Runs the daemon's named components, restarts the ones that crash, and knows who is healthy.

A component is an ``async def run(heartbeat)``. It calls ``heartbeat.beat(within=…)`` whenever
it makes progress, promising the next beat within that many seconds (a poller about to sleep
five minutes says so). A component that misses its promise is unhealthy; while any is, the
systemd watchdog is not fed, so a hung poll, writer or export gets the service restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from headlined import logs

log = logs.get("supervisor")

Clock = Callable[[], float]


class Heartbeat:
    """Progress marker of one component. Safe to call from a worker thread."""

    def __init__(self, name: str, deadline: float, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.deadline = deadline
        self._clock = clock
        self.last_beat = clock()
        self.due = self.last_beat + deadline

    def beat(self, within: float | None = None) -> None:
        """Record progress; the next beat is due within ``within`` s (default: the deadline)."""
        now = self._clock()
        self.last_beat = now
        self.due = now + (self.deadline if within is None else within)

    def healthy(self, now: float | None = None) -> bool:
        """Whether the component kept its last promise."""
        return (self._clock() if now is None else now) <= self.due

    def overdue(self, now: float | None = None) -> float:
        """Seconds past the promised beat (0 when healthy)."""
        return max(0.0, (self._clock() if now is None else now) - self.due)


Run = Callable[[Heartbeat], Awaitable[None]]


def restart_delay(
    failures: int, base: float = 1.0, cap: float = 60.0, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter in its upper half: 1, 2, 4 … ``cap`` seconds."""
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return float(ceiling / 2 + rng() * ceiling / 2)


@dataclass
class _Component:
    name: str
    heartbeat: Heartbeat
    task: asyncio.Task[None] | None = None
    failures: int = 0
    restarts: int = 0
    finished: bool = False
    last_error: str | None = None
    watched: bool = True


class Supervisor:
    """Starts components as tasks, restarts crashed ones with backoff, reports health."""

    # A run that lasted this long before crashing counts as a fresh start for backoff.
    STABLE_AFTER = 300.0

    def __init__(
        self,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._components: dict[str, _Component] = {}
        self._stopping = False

    def add(self, name: str, run: Run, deadline: float) -> Heartbeat:
        """Register and start a component (a running loop is required)."""
        if name in self._components:
            raise ValueError(f"component {name!r} already exists")
        heartbeat = Heartbeat(name, deadline, self._clock)
        component = _Component(name, heartbeat)
        self._components[name] = component
        component.task = asyncio.create_task(self._keep_running(component, run), name=name)
        return heartbeat

    def heartbeat(self, name: str, deadline: float) -> Heartbeat:
        """A heartbeat watched for health but driven by something that is not a task here
        (the DuckDB writer thread)."""
        heartbeat = Heartbeat(name, deadline, self._clock)
        self._components[name] = _Component(name, heartbeat)
        return heartbeat

    async def remove(self, name: str) -> None:
        """Stop and forget a component (a source deleted by a reload)."""
        component = self._components.pop(name, None)
        if component is not None and component.task is not None:
            component.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await component.task

    def names(self) -> list[str]:
        """Names of the registered components."""
        return list(self._components)

    def unhealthy(self) -> list[str]:
        """Components that missed their promised beat."""
        now = self._clock()
        return [
            c.name for c in self._components.values() if c.watched and not c.heartbeat.healthy(now)
        ]

    def errors(self) -> dict[str, str]:
        """The last crash of each component that has crashed."""
        return {c.name: c.last_error for c in self._components.values() if c.last_error}

    async def _keep_running(self, component: _Component, run: Run) -> None:
        while not self._stopping:
            started = self._clock()
            component.heartbeat.beat()
            try:
                await run(component.heartbeat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a crash of one part must not end the daemon
                if self._clock() - started > self.STABLE_AFTER:
                    component.failures = 0
                component.failures += 1
                component.restarts += 1
                component.last_error = f"{type(exc).__name__}: {exc}"
                delay = restart_delay(component.failures)
                log.error(
                    "component_crashed",
                    name=component.name,
                    error=component.last_error,
                    restart_in_s=round(delay, 1),
                    exc_info=exc,
                )
                # Waiting out the backoff is a promise kept, not a hang.
                component.heartbeat.beat(within=delay + component.heartbeat.deadline)
                await self._sleep(delay)
            else:
                component.finished = True
                component.watched = False
                log.info("component_finished", name=component.name)
                return

    async def stop(self, grace: float) -> list[str]:
        """Cancel every component and wait for them; returns the names that did not stop."""
        self._stopping = True
        tasks = {c.name: c.task for c in self._components.values() if c.task is not None}
        for task in tasks.values():
            task.cancel()
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks.values(), timeout=grace)
        return [name for name, task in tasks.items() if task in pending]
