"""What a stream has translated and its reader has not taken yet: held to a bound, so a slow reader
pauses the work instead of growing the heap.

A stream runs all its segments at once and hands them to its reader in order. Before each provider
call a segment asks for room, and waits (holding no lane slot) while the stream holds `limit_chars`
of text its reader has not taken, counting the expected answer of every call under way. The segment
the reader is on waits only while its own unread text is over the bound, so the reader can always
make progress. A call once started is read to its end at the provider's pace, whatever the reader
does: the lane's slot and the provider's connection are freed when the provider is done, and the
answer waits here.

So a stream holds about `limit_chars` of text, plus the answer of the segment being read, plus what
the calls started under the bound answer beyond their estimate: however long its translation and
however slow its reader, never the whole of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

__all__ = ["MAX_TAKE_CHARS", "Outbox", "SegmentSink"]

_End = TypeVar("_End")

# The most text one take hands the reader: one message to the caller.
MAX_TAKE_CHARS = 16_384
# Deltas kept as separate strings before they are joined into one: a one-character delta costs
# some fifty bytes of object around it, which a bound counted in characters would not see.
_JOIN_EVERY = 64


class _Segment(Generic[_End]):
    __slots__ = ("chars", "end", "loose", "parts")

    def __init__(self) -> None:
        self.parts: deque[str] = deque()
        # Parts at the right end of `parts` not yet joined into one.
        self.loose = 0
        self.chars = 0
        self.end: _End | BaseException | None = None


class Outbox(Generic[_End]):
    """The unread text of one stream's segments, each ended by an outcome (`_End`) or an exception."""

    def __init__(self, segments: int, limit_chars: int) -> None:
        self._segments = [_Segment[_End]() for _ in range(segments)]
        self._limit = limit_chars
        # Unread text of every segment, plus the expected answers of the calls under way.
        self._held = 0
        self._unread = 0
        # The segment the reader is on.
        self._head = 0
        self._reader: asyncio.Future[None] | None = None
        # Segments waiting for room: index -> (expected answer, future); a heap of their indices.
        self._waiting: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self._order: list[int] = []

    @property
    def unread_chars(self) -> int:
        """Text translated and not yet taken by the reader."""
        return self._unread

    def sink(self, index: int) -> SegmentSink:
        """What segment `index` puts its text into and asks for room through."""
        return SegmentSink(self, index)

    # -- the writers' side ----------------------------------------------------

    def put(self, index: int, text: str) -> None:
        """Add text to segment `index` (never waits: a call under way is read at the provider's pace)."""
        if not text:
            return
        seg = self._segments[index]
        seg.parts.append(text)
        seg.loose += 1
        if seg.loose >= _JOIN_EVERY:
            joined = "".join([seg.parts.pop() for _ in range(seg.loose)][::-1])
            seg.parts.append(joined)
            seg.loose = 0
        seg.chars += len(text)
        self._unread += len(text)
        self._held += len(text)
        if index == self._head:
            self._wake_reader()

    def finish(self, index: int, end: _End | BaseException) -> None:
        """End segment `index` with its outcome or its failure."""
        self._segments[index].end = end
        if index == self._head:
            self._wake_reader()

    @contextlib.asynccontextmanager
    async def room(self, index: int, expected_chars: int) -> AsyncIterator[None]:
        """Wait until segment `index` may start a call expected to answer `expected_chars`; count it while it runs."""
        if not self._fits(index):
            fut = asyncio.get_running_loop().create_future()
            self._waiting[index] = (expected_chars, fut)
            heapq.heappush(self._order, index)
            try:
                await fut  # granted: `_grant` counted the expected answer
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release(expected_chars)  # granted in the same tick as the cancel
                else:
                    self._waiting.pop(index, None)
                raise
        else:
            self._held += expected_chars
        try:
            yield
        finally:
            self._release(expected_chars)

    # -- the reader's side ----------------------------------------------------

    async def take(self, index: int) -> str | _End | BaseException:
        """The next of segment `index`: its unread text (at most MAX_TAKE_CHARS, joined), else its end; waits."""
        if index != self._head:
            self._head = index
            self._dispatch()  # the segment now read may have been waiting behind the others
        seg = self._segments[index]
        while not seg.parts and seg.end is None:
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        if not seg.parts:
            assert seg.end is not None
            return seg.end
        out: list[str] = []
        n = 0
        while seg.parts and n < MAX_TAKE_CHARS:
            part = seg.parts.popleft()
            if len(part) > MAX_TAKE_CHARS - n:
                seg.parts.appendleft(part[MAX_TAKE_CHARS - n :])
                part = part[: MAX_TAKE_CHARS - n]
            out.append(part)
            n += len(part)
        seg.loose = min(seg.loose, len(seg.parts))
        seg.chars -= n
        self._unread -= n
        self._release(n)
        return "".join(out)

    # -- room -------------------------------------------------------------------

    def _fits(self, index: int) -> bool:
        if index == self._head and self._segments[index].chars < self._limit:
            return True
        return self._held < self._limit

    def _release(self, chars: int) -> None:
        self._held -= chars
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant the segment being read, then others in order while the stream is under its bound."""
        head = self._waiting.get(self._head)
        if head is not None and self._segments[self._head].chars < self._limit:
            self._grant(self._head)
        while self._order and self._held < self._limit:
            index = heapq.heappop(self._order)
            if index in self._waiting:
                self._grant(index)

    def _grant(self, index: int) -> None:
        expected, fut = self._waiting.pop(index)
        if fut.done():
            return  # cancelled, its handler not run yet
        self._held += expected
        fut.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)


class SegmentSink:
    """One segment's view of its stream's Outbox: text goes in with `sink(text)`, calls ask for `room`."""

    __slots__ = ("_index", "_outbox")

    def __init__(self, outbox: Outbox[Any], index: int) -> None:
        self._outbox = outbox
        self._index = index

    def __call__(self, text: str) -> None:
        self._outbox.put(self._index, text)

    def room(self, expected_chars: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for room for a call expected to answer `expected_chars`, and count it while it runs."""
        return self._outbox.room(self._index, expected_chars)
