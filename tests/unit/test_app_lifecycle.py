"""The app's lifecycle mechanism: parts start in the order listed and stop in the reverse
order, and only the parts that started are stopped. tests/integration/test_app_lifecycle.py
pins the order the app lists its parts in."""

from __future__ import annotations

import asyncio

import pytest

from ticketgate.app.lifecycle import BackgroundTask, Hook, Lifecycle, Part


def recorded(calls: list[str], name: str, *, fails: bool = False) -> Hook:
    async def hook() -> None:
        calls.append(name)
        if fails:
            raise RuntimeError(f"{name} failed")

    return hook


def parts(calls: list[str], *names: str) -> list[Part]:
    return [
        Part(name, recorded(calls, f"start {name}"), recorded(calls, f"stop {name}"))
        for name in names
    ]


async def test_parts_start_in_order_and_stop_in_reverse() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle(parts(calls, "a", "b", "c"))
    await lifecycle.start()
    await lifecycle.stop()
    assert calls == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_absent_parts_are_left_out_and_a_half_part_keeps_its_place() -> None:
    calls: list[str] = []
    a, c = parts(calls, "a", "c")
    lifecycle = Lifecycle([a, None, Part("only stops", stop=recorded(calls, "stop b")), None, c])
    assert lifecycle.names == ["a", "only stops", "c"]
    await lifecycle.start()
    await lifecycle.stop()
    assert calls == ["start a", "start c", "stop c", "stop b", "stop a"]


async def test_a_failed_start_stops_the_parts_that_started_before_raising() -> None:
    """uvicorn sends no lifespan shutdown after a failed start-up: the lifecycle itself closes
    what it opened (a later stop has nothing left to do)."""
    calls: list[str] = []
    a, c = parts(calls, "a", "c")
    broken = Part("b", recorded(calls, "start b", fails=True), recorded(calls, "stop b"))
    lifecycle = Lifecycle([a, broken, c])
    with pytest.raises(RuntimeError, match="b failed"):
        await lifecycle.start()
    assert calls == ["start a", "start b", "stop a"]
    await lifecycle.stop()
    assert calls == ["start a", "start b", "stop a"]


async def test_a_failed_start_is_the_error_raised_even_when_a_stop_fails_too() -> None:
    calls: list[str] = []
    a = Part("a", recorded(calls, "start a"), recorded(calls, "stop a", fails=True))
    broken = Part("b", recorded(calls, "start b", fails=True))
    with pytest.raises(RuntimeError, match="b failed"):
        await Lifecycle([a, broken]).start()
    assert calls == ["start a", "start b", "stop a"]


async def test_a_failing_stop_is_logged_the_rest_still_stop_and_its_error_is_raised_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    a, c = parts(calls, "a", "c")
    broken = Part("b", recorded(calls, "start b"), recorded(calls, "stop b", fails=True))
    lifecycle = Lifecycle([a, broken, c])
    await lifecycle.start()
    with pytest.raises(RuntimeError, match="b failed"):
        await lifecycle.stop()
    assert calls == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert "stopping b failed" in caplog.text


async def test_a_second_stop_stops_nothing() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle(parts(calls, "a"))
    await lifecycle.start()
    await lifecycle.stop()
    await lifecycle.stop()
    assert calls == ["start a", "stop a"]


async def test_a_background_task_runs_while_started_and_has_unwound_when_stopped() -> None:
    rounds: list[int] = []
    three_rounds, unwound = asyncio.Event(), asyncio.Event()

    async def loop() -> None:
        try:
            while True:
                rounds.append(len(rounds))
                if len(rounds) == 3:
                    three_rounds.set()
                await asyncio.sleep(0.001)
        finally:
            unwound.set()

    task = BackgroundTask(loop)
    await task.start()
    await asyncio.wait_for(three_rounds.wait(), 5)
    await task.stop()
    assert unwound.is_set()  # stop returned only after the loop's finally ran
    seen = len(rounds)
    await asyncio.sleep(0.01)
    assert len(rounds) == seen
    await task.stop()  # stopping again (or never started) is fine
