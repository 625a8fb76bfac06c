"""What the gRPC face asks of the jobs, whichever store keeps them: SQLite in this process (`Jobs`) or Redis
shared by every replica (`SharedJobs`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._store import JobRecord

__all__ = ["JobControl"]


class JobControl(Protocol):
    """Submit, look up, page through, cancel, forget and wait for jobs; None where the job is unknown (or
    expired)."""

    async def submit(self, spec: bytes, window_s: float, requests: Sequence[bytes]) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def page(self, after_seq: int, limit: int) -> list[JobRecord]: ...

    async def results(self, job_id: str) -> list[tuple[int, bool, bytes]]: ...

    async def cancel(self, job_id: str) -> JobRecord | None: ...

    async def delete(self, job_id: str) -> JobRecord | None: ...

    async def wait(self, job_id: str, timeout_s: float) -> JobRecord | None: ...
