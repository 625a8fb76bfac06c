"""Jobs that outlive a request: many translation requests stored as one job, its lines run a few at a time and
each recorded once, in SQLite (`_store`), resumed after a restart (`_runner`). BatchTranslate and
google.longrunning.Operations (translane.rpc.operations) are their gRPC face."""

from ._runner import Jobs, LineRunner, open_jobs
from ._store import CANCELLED, RUNNING, SUCCEEDED, JobRecord, JobStore, LineResult, Progress, open_store

__all__ = [
    "CANCELLED",
    "RUNNING",
    "SUCCEEDED",
    "JobRecord",
    "JobStore",
    "Jobs",
    "LineResult",
    "LineRunner",
    "Progress",
    "open_jobs",
    "open_store",
]
