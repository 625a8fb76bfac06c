import datetime

from google.longrunning import operations_pb2 as _operations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_INTERACTIVE: _ClassVar[Priority]
    PRIORITY_BATCH: _ClassVar[Priority]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_INTERACTIVE: Priority
PRIORITY_BATCH: Priority

class GlossaryEntry(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class TranslateRequest(_message.Message):
    __slots__ = ("segments", "target_language", "source_language", "model", "task_id", "priority", "max_output_tokens", "glossary", "mime_type", "allow_truncated", "no_cache", "messages")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GLOSSARY_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedScalarFieldContainer[str]
    target_language: str
    source_language: str
    model: str
    task_id: str
    priority: Priority
    max_output_tokens: int
    glossary: _containers.RepeatedCompositeFieldContainer[GlossaryEntry]
    mime_type: str
    allow_truncated: bool
    no_cache: bool
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, segments: _Optional[_Iterable[str]] = ..., target_language: _Optional[str] = ..., source_language: _Optional[str] = ..., model: _Optional[str] = ..., task_id: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., max_output_tokens: _Optional[int] = ..., glossary: _Optional[_Iterable[_Union[GlossaryEntry, _Mapping]]] = ..., mime_type: _Optional[str] = ..., allow_truncated: _Optional[bool] = ..., no_cache: _Optional[bool] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cost", "currency", "estimated", "reasoning_tokens", "cached_segments")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    cost: float
    currency: str
    estimated: bool
    reasoning_tokens: int
    cached_segments: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., cost: _Optional[float] = ..., currency: _Optional[str] = ..., estimated: _Optional[bool] = ..., reasoning_tokens: _Optional[int] = ..., cached_segments: _Optional[int] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("queued_ms", "governed_ms", "upstream_ms", "total_ms")
    QUEUED_MS_FIELD_NUMBER: _ClassVar[int]
    GOVERNED_MS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queued_ms: float
    governed_ms: float
    upstream_ms: float
    total_ms: float
    def __init__(self, queued_ms: _Optional[float] = ..., governed_ms: _Optional[float] = ..., upstream_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class Translation(_message.Message):
    __slots__ = ("text", "model", "detected_source_language", "truncated", "cached")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DETECTED_SOURCE_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    detected_source_language: str
    truncated: bool
    cached: bool
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ..., detected_source_language: _Optional[str] = ..., truncated: _Optional[bool] = ..., cached: _Optional[bool] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("translations", "model", "usage", "timing", "task_id", "requested_model")
    TRANSLATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    translations: _containers.RepeatedCompositeFieldContainer[Translation]
    model: str
    usage: Usage
    timing: Timing
    task_id: str
    requested_model: str
    def __init__(self, translations: _Optional[_Iterable[_Union[Translation, _Mapping]]] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., task_id: _Optional[str] = ..., requested_model: _Optional[str] = ...) -> None: ...

class TranslateChunk(_message.Message):
    __slots__ = ("segment_index", "delta", "usage", "segment_done", "final", "model", "timing", "task_id", "truncated", "requested_model")
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_DONE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    segment_index: int
    delta: str
    usage: Usage
    segment_done: bool
    final: bool
    model: str
    timing: Timing
    task_id: str
    truncated: bool
    requested_model: str
    def __init__(self, segment_index: _Optional[int] = ..., delta: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., segment_done: _Optional[bool] = ..., final: _Optional[bool] = ..., model: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., task_id: _Optional[str] = ..., truncated: _Optional[bool] = ..., requested_model: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "lane", "provider", "api_style", "rpm", "tpm", "max_concurrency", "max_input_tokens", "max_output_tokens", "context_tokens", "input_price_per_mtok", "output_price_per_mtok", "currency", "fallbacks", "available", "daily_token_budget", "daily_tokens_spent", "daily_cost_budget", "daily_cost_spent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_STYLE_FIELD_NUMBER: _ClassVar[int]
    RPM_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DAILY_TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    DAILY_TOKENS_SPENT_FIELD_NUMBER: _ClassVar[int]
    DAILY_COST_BUDGET_FIELD_NUMBER: _ClassVar[int]
    DAILY_COST_SPENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    lane: str
    provider: str
    api_style: str
    rpm: int
    tpm: int
    max_concurrency: int
    max_input_tokens: int
    max_output_tokens: int
    context_tokens: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    currency: str
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    available: bool
    daily_token_budget: int
    daily_tokens_spent: int
    daily_cost_budget: float
    daily_cost_spent: float
    def __init__(self, name: _Optional[str] = ..., lane: _Optional[str] = ..., provider: _Optional[str] = ..., api_style: _Optional[str] = ..., rpm: _Optional[int] = ..., tpm: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., max_input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., context_tokens: _Optional[int] = ..., input_price_per_mtok: _Optional[float] = ..., output_price_per_mtok: _Optional[float] = ..., currency: _Optional[str] = ..., fallbacks: _Optional[_Iterable[str]] = ..., available: _Optional[bool] = ..., daily_token_budget: _Optional[int] = ..., daily_tokens_spent: _Optional[int] = ..., daily_cost_budget: _Optional[float] = ..., daily_cost_spent: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...

class BatchTranslateRequest(_message.Message):
    __slots__ = ("requests", "completion_window", "priority", "labels", "tenant", "input_file_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TranslateRequest]
    completion_window: str
    priority: Priority
    labels: _containers.ScalarMap[str, str]
    tenant: str
    input_file_id: str
    def __init__(self, requests: _Optional[_Iterable[_Union[TranslateRequest, _Mapping]]] = ..., completion_window: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., tenant: _Optional[str] = ..., input_file_id: _Optional[str] = ...) -> None: ...

class BatchTranslateMetadata(_message.Message):
    __slots__ = ("state", "total", "done", "failed", "usage", "create_time", "update_time", "end_time", "completion_window", "priority", "labels", "input_file_id")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[BatchTranslateMetadata.State]
        RUNNING: _ClassVar[BatchTranslateMetadata.State]
        SUCCEEDED: _ClassVar[BatchTranslateMetadata.State]
        CANCELLED: _ClassVar[BatchTranslateMetadata.State]
    STATE_UNSPECIFIED: BatchTranslateMetadata.State
    RUNNING: BatchTranslateMetadata.State
    SUCCEEDED: BatchTranslateMetadata.State
    CANCELLED: BatchTranslateMetadata.State
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    state: BatchTranslateMetadata.State
    total: int
    done: int
    failed: int
    usage: Usage
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    completion_window: str
    priority: Priority
    labels: _containers.ScalarMap[str, str]
    input_file_id: str
    def __init__(self, state: _Optional[_Union[BatchTranslateMetadata.State, str]] = ..., total: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completion_window: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., input_file_id: _Optional[str] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("index", "response", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    response: TranslateResponse
    error: _status_pb2.Status
    def __init__(self, index: _Optional[int] = ..., response: _Optional[_Union[TranslateResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class BatchTranslateResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchResult, _Mapping]]] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("filename", "purpose", "data")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    filename: str
    purpose: str
    data: bytes
    def __init__(self, filename: _Optional[str] = ..., purpose: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("id", "filename", "purpose", "size_bytes", "request_count", "create_time", "expire_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    filename: str
    purpose: str
    size_bytes: int
    request_count: int
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., filename: _Optional[str] = ..., purpose: _Optional[str] = ..., size_bytes: _Optional[int] = ..., request_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetFileRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("files", "next_page_token")
    FILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[File]
    next_page_token: str
    def __init__(self, files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteFileRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("tenant", "start_day", "end_day", "group_by")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    START_DAY_FIELD_NUMBER: _ClassVar[int]
    END_DAY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    start_day: str
    end_day: str
    group_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., start_day: _Optional[str] = ..., end_day: _Optional[str] = ..., group_by: _Optional[_Iterable[str]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("tenant", "model", "day", "task_id", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cost", "currency")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    model: str
    day: str
    task_id: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    cost: float
    currency: str
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., day: _Optional[str] = ..., task_id: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., cost: _Optional[float] = ..., currency: _Optional[str] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("rows", "start_day", "end_day")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    START_DAY_FIELD_NUMBER: _ClassVar[int]
    END_DAY_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    start_day: str
    end_day: str
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., start_day: _Optional[str] = ..., end_day: _Optional[str] = ...) -> None: ...
