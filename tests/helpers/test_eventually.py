"""`eventually`: the value a condition reaches, or a failure that names what was awaited."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from .eventually import eventually, eventually_sync


async def test_returns_the_first_true_value_of_a_sync_or_async_condition() -> None:
    tries = itertools.count(1)
    assert await eventually(lambda: next(tries) >= 3, 5.0, "the third try") is True

    answers = iter([None, None, "ready"])

    async def answer() -> str | None:
        await asyncio.sleep(0)
        return next(answers)

    assert await eventually(answer, 5.0, "an answer") == "ready"


async def test_fails_naming_what_was_awaited_and_what_it_saw_last() -> None:
    queued = 2
    with pytest.raises(AssertionError, match=r"^not reached in 0\.05 s: three calls queued$"):
        await eventually(lambda: queued == 3, 0.05, "three calls queued")
    with pytest.raises(AssertionError, match=r"^not reached in 0\.05 s: a grant \(last: \[\]\)$"):
        await eventually(lambda: [], 0.05, "a grant")


async def test_a_described_state_is_read_when_the_bound_passes() -> None:
    state = {"queued": 0}
    asyncio.get_running_loop().call_later(0.01, state.update, {"queued": 7})
    with pytest.raises(AssertionError, match="queued: 7"):
        await eventually(lambda: False, 0.05, lambda: f"queued: {state['queued']}")


async def test_ignored_errors_count_as_not_yet_and_others_end_the_wait() -> None:
    tries = itertools.count(1)

    def flaky() -> bool:
        if next(tries) < 3:
            raise ConnectionError("refused")
        return True

    assert await eventually(flaky, 5.0, "a connection", ignoring=(ConnectionError,))
    with pytest.raises(AssertionError, match="last try: ConnectionError: refused") as info:
        await eventually(_refuse, 0.05, "a connection", ignoring=(ConnectionError,))
    assert isinstance(info.value.__cause__, ConnectionError)
    with pytest.raises(ValueError, match="broken"):
        await eventually(_broken, 5.0, "anything", ignoring=(ConnectionError,))


def test_the_blocking_twin_waits_and_fails_the_same_way() -> None:
    tries = itertools.count(1)
    assert eventually_sync(lambda: next(tries) == 3 and "third", 5.0, "the third try", interval_s=0.001) == "third"
    with pytest.raises(AssertionError, match=r"not reached in 0\.02 s: a port open"):
        eventually_sync(lambda: False, 0.02, "a port open", interval_s=0.001)


def _refuse() -> bool:
    raise ConnectionError("refused")


def _broken() -> bool:
    raise ValueError("broken")
