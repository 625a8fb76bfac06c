"""A stream's outbox: text waits for its reader within a bound, calls wait for room, the reader always progresses."""

from __future__ import annotations

import asyncio

import pytest
from translane.outbox import MAX_TAKE_CHARS, Outbox

from ..helpers.clock import settle

END = "end"


async def _granted(outbox: Outbox[str], index: int, expected: int, started: list[int], stop: asyncio.Event) -> None:
    async with outbox.room(index, expected):
        started.append(index)
        await stop.wait()


async def test_text_comes_out_in_segment_order_joined_and_whole() -> None:
    box: Outbox[str] = Outbox(2, limit_chars=1000)
    box.put(1, "later ")
    box.finish(1, END)
    for i in range(200):  # past the point where small deltas are joined into one string
        box.put(0, f"{i} ")
    box.finish(0, END)
    assert box.unread_chars == len("later ") + sum(len(f"{i} ") for i in range(200))
    assert await box.take(0) == "".join(f"{i} " for i in range(200))
    assert await box.take(0) == END
    assert (await box.take(1), await box.take(1)) == ("later ", END)
    assert box.unread_chars == 0


async def test_a_take_hands_over_at_most_max_take_chars() -> None:
    box: Outbox[str] = Outbox(1, limit_chars=10**6)
    box.put(0, "a" * (MAX_TAKE_CHARS + 10))
    box.put(0, "b")
    box.finish(0, END)
    assert await box.take(0) == "a" * MAX_TAKE_CHARS
    assert await box.take(0) == "a" * 10 + "b"
    assert await box.take(0) == END


async def test_a_failure_ends_its_segment() -> None:
    box: Outbox[str] = Outbox(1, limit_chars=100)
    box.put(0, "partial")
    box.finish(0, ValueError("provider gone"))
    assert await box.take(0) == "partial"
    failure = await box.take(0)
    assert isinstance(failure, ValueError)


async def test_the_reader_waits_for_its_segment_and_no_other() -> None:
    box: Outbox[str] = Outbox(2, limit_chars=100)
    reader = asyncio.create_task(box.take(0))
    box.put(1, "not yet")
    await settle(10)
    assert not reader.done()
    box.put(0, "now")
    assert await reader == "now"


async def test_calls_wait_for_room_while_the_stream_holds_its_bound() -> None:
    box: Outbox[str] = Outbox(4, limit_chars=100)
    stop = asyncio.Event()
    started: list[int] = []
    # Segment 1 runs a call expected to answer 60, segment 2 one of 60: under the bound when each starts.
    calls = [asyncio.create_task(_granted(box, i, 60, started, stop)) for i in (1, 2)]
    await settle(10)
    assert started == [1, 2]
    # Now the stream holds 120 (expected): segment 3 waits, holding nothing.
    third = asyncio.create_task(_granted(box, 3, 60, started, stop))
    await settle(10)
    assert started == [1, 2]
    # The calls end with their answers unread: still over the bound.
    box.put(1, "x" * 60)
    box.put(2, "y" * 60)
    stop.set()
    await asyncio.gather(*calls)
    assert started == [1, 2] and box.unread_chars == 120
    # The reader takes segment 1's answer: under the bound again, and segment 3 goes.
    box.finish(0, END)
    assert await box.take(0) == END
    assert await box.take(1) == "x" * 60
    await third
    assert started == [1, 2, 3]


async def test_the_segment_being_read_never_waits_behind_the_others() -> None:
    box: Outbox[str] = Outbox(3, limit_chars=100)
    # Segments 1 and 2 have filled the stream far past its bound; the reader is on segment 0.
    box.put(1, "x" * 500)
    box.put(2, "y" * 500)
    stop = asyncio.Event()
    stop.set()
    started: list[int] = []
    await asyncio.wait_for(_granted(box, 0, 60, started, stop), timeout=1)
    assert started == [0]
    # Segment 2 waits; once the reader moves on to it, it goes (its own unread text is what counts).
    waiting = asyncio.create_task(_granted(box, 2, 60, started, stop))
    await settle(10)
    assert started == [0]
    box.finish(0, END)
    box.finish(1, END)
    assert await box.take(0) == END
    assert await box.take(1) == "x" * 500
    assert await box.take(1) == END
    reader = asyncio.create_task(box.take(2))  # the reader is on segment 2 now, 500 unread: over the bound
    assert await reader == "y" * 500
    await asyncio.wait_for(waiting, timeout=1)
    assert started == [0, 2]


async def test_a_call_cancelled_while_it_waits_gives_its_place_up() -> None:
    box: Outbox[str] = Outbox(3, limit_chars=100)
    box.put(1, "x" * 200)
    stop = asyncio.Event()
    started: list[int] = []
    waiting = asyncio.create_task(_granted(box, 2, 60, started, stop))
    await settle(10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    box.finish(0, END)
    assert await box.take(0) == END
    assert await box.take(1) == "x" * 200
    assert box.unread_chars == 0 == box._held  # nothing still counted for the call that left (a private look)
    assert started == []
