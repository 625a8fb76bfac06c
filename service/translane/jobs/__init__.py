"""Jobs that outlive a request: many translation requests stored as one job, its lines run a few at a time and
each recorded once. Kept in SQLite and run by this process (`_store`, `_runner`: resumed after a restart), or,
when the governor is shared in Redis, kept there and run by every replica (`_redis_store`, `_shared`: the lines
of a replica that died taken over by another). BatchTranslate and google.longrunning.Operations
(translane.rpc.operations) are their gRPC face, through `JobControl`. A job's requests may come from a file
uploaded first (UploadFile), kept where the jobs are (`_files`, `_redis_files`), through `FileControl`."""

from ._control import FileControl, JobControl
from ._files import FileRecord, FileStore, open_file_store
from ._redis_files import RedisFileStore, open_redis_file_store
from ._redis_store import RedisJobStore
from ._runner import Jobs, LineRunner, open_jobs
from ._shared import SharedJobs, open_shared_jobs
from ._store import CANCELLED, RUNNING, SUCCEEDED, JobRecord, JobStore, LineResult, Progress, open_store

__all__ = [
    "CANCELLED",
    "RUNNING",
    "SUCCEEDED",
    "FileControl",
    "FileRecord",
    "FileStore",
    "JobControl",
    "JobRecord",
    "JobStore",
    "Jobs",
    "LineResult",
    "LineRunner",
    "Progress",
    "RedisFileStore",
    "RedisJobStore",
    "SharedJobs",
    "open_file_store",
    "open_jobs",
    "open_redis_file_store",
    "open_shared_jobs",
    "open_store",
]
