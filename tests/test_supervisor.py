"""Supervisor: health from heartbeats, restart with backoff, clean stop."""

from __future__ import annotations

import asyncio
import math

from headlined.supervisor import Heartbeat, Supervisor, restart_delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_promises() -> None:
    clock = FakeClock()
    beat = Heartbeat("poller", deadline=10, clock=clock)
    assert beat.healthy()
    clock.now += 10.5
    assert not beat.healthy()
    assert beat.overdue() == 0.5
    beat.beat(within=300)  # about to sleep five minutes: a promise, not a hang
    clock.now += 299
    assert beat.healthy()
    beat.beat(within=math.inf)
    clock.now += 1e9
    assert beat.healthy()


def test_restart_delay_grows_and_caps() -> None:
    upper = [restart_delay(n, rng=lambda: 1.0) for n in range(1, 10)]
    lower = [restart_delay(n, rng=lambda: 0.0) for n in range(1, 10)]
    assert upper[:4] == [1, 2, 4, 8]
    assert upper[-1] == 60
    assert lower[:3] == [0.5, 1, 2]


def test_crashing_component_is_restarted_and_reported() -> None:
    runs: list[int] = []
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    async def flaky(heartbeat: Heartbeat) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        heartbeat.beat()

    async def scenario() -> Supervisor:
        supervisor = Supervisor(sleep=fake_sleep)
        supervisor.add("flaky", flaky, deadline=5)
        for _ in range(50):
            await asyncio.sleep(0)
        assert await supervisor.stop(grace=1) == []
        return supervisor

    supervisor = asyncio.run(scenario())
    assert len(runs) == 3
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9  # backoff does not shrink
    assert supervisor.errors() == {"flaky": "RuntimeError: boom 2"}
    assert supervisor.unhealthy() == []  # finished components are no longer watched


def test_unhealthy_names_the_hung_component() -> None:
    clock = FakeClock()

    async def hangs(heartbeat: Heartbeat) -> None:
        heartbeat.beat(within=1)
        await asyncio.Event().wait()

    async def scenario() -> None:
        supervisor = Supervisor(clock=clock)
        supervisor.add("hangs", hangs, deadline=1)
        writer = supervisor.heartbeat("store", deadline=30)
        await asyncio.sleep(0)
        assert supervisor.unhealthy() == []
        clock.now += 2
        writer.beat()
        assert supervisor.unhealthy() == ["hangs"]
        assert await supervisor.stop(grace=1) == []

    asyncio.run(scenario())


def test_stop_reports_a_component_that_ignores_cancellation() -> None:
    async def stubborn(_heartbeat: Heartbeat) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # e.g. a flush that outlives the grace period

    async def scenario() -> list[str]:
        supervisor = Supervisor()
        supervisor.add("stubborn", stubborn, deadline=1)
        await asyncio.sleep(0)
        return await supervisor.stop(grace=0.1)

    assert asyncio.run(scenario()) == ["stubborn"]
