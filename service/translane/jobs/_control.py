"""What the gRPC face asks of the jobs, whichever store keeps them: SQLite in this process (`Jobs`) or Redis
shared by every replica (`SharedJobs`); and of the files of requests they may be submitted from (`FileStore`,
`RedisFileStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._files import FileRecord
from ._store import JobRecord

__all__ = ["FileControl", "JobControl"]


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


class FileControl(Protocol):
    """Store, look up, read, page through and forget files of requests; None / False where the file is unknown
    (or expired)."""

    async def put(self, record: FileRecord, requests: Sequence[bytes]) -> FileRecord: ...

    async def get(self, file_id: str) -> FileRecord | None: ...

    async def requests(self, file_id: str) -> list[bytes] | None: ...

    async def page(self, after_seq: int, limit: int) -> list[FileRecord]: ...

    async def delete(self, file_id: str) -> bool: ...
