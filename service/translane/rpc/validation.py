"""A TranslateRequest checked field by field and made into the engine's Job; INVALID_ARGUMENT names the field."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config, ModelConfig
from ..contract import LINE_BREAKING, MAX_TASK_ID_CHARS, task_id_problem
from ..engine import Job
from ..errors import InvalidRequest, UnknownModel, quote
from ..lanes import BATCH, INTERACTIVE
from ..languages import NAMES, normalize_language
from ..v1 import translate_pb2 as pb

__all__ = ["DEADLINE_MARGIN_S", "MAX_TASK_ID_CHARS", "MIME_TYPES", "Validator"]

MIME_TYPES = ("text/plain", "text/html")
# Answer a little before the caller's deadline, so a shed request hears why.
DEADLINE_MARGIN_S = 0.02
_PRIORITIES = frozenset(pb.Priority.values())


class Validator:
    """Builds Jobs from requests under the configured bounds; `chain` gives a model's fallbacks in order."""

    def __init__(self, config: Config, chain: Callable[[str], tuple[ModelConfig, ...]]) -> None:
        self.config = config
        self._chain = chain
        # Every code translane can prompt for, and any a model's own list adds.
        known = dict.fromkeys(NAMES)
        for m in config.models.values():
            known.update(dict.fromkeys(m.languages))
        self.languages = tuple(known)

    def job(self, req: pb.TranslateRequest, now: float, time_remaining: float | None) -> Job:
        """The request as a Job whose deadline is the caller's (or the default), on the loop clock at `now`."""
        cfg = self.config
        if not req.segments:
            raise InvalidRequest("segments: at least one segment is required")
        if len(req.segments) > cfg.server.max_segments:
            raise InvalidRequest(f"segments: {len(req.segments)} segments, over the limit of {cfg.server.max_segments}")
        for i, s in enumerate(req.segments):
            if len(s) > cfg.server.max_segment_chars:
                raise InvalidRequest(
                    f"segments[{i}]: {len(s)} characters, over the limit of {cfg.server.max_segment_chars}"
                )
        target = normalize_language(req.target_language)
        if not target:
            raise InvalidRequest("target_language: required (a language code such as 'zh' or 'en')")
        source = normalize_language(req.source_language)
        for name, code, raw in (
            ("target_language", target, req.target_language),
            ("source_language", source, req.source_language),
        ):
            if code and code not in self.languages:
                raise InvalidRequest(
                    f"{name}: unknown language {quote(raw)}; accepted: {', '.join(self.languages)} "
                    "(and region or script variants such as zh-CN, zh-TW, pt-BR, en-US)"
                )
        if req.mime_type and req.mime_type not in MIME_TYPES:
            raise InvalidRequest(f"mime_type: must be one of {', '.join(MIME_TYPES)}, got {quote(req.mime_type)}")
        problem = task_id_problem(req.task_id)
        if problem:
            raise InvalidRequest(f"task_id: {problem}; got {quote(req.task_id)}")
        if req.priority not in _PRIORITIES:
            raise InvalidRequest(f"priority: unknown value {req.priority}; accepted: {', '.join(pb.Priority.keys())}")
        glossary = self.glossary(req)
        model = self.model_for(req.model, target)
        budget = cfg.server.default_deadline_s
        if time_remaining is not None:
            budget = min(time_remaining, budget)
        priority = BATCH if req.priority == pb.PRIORITY_BATCH else INTERACTIVE
        max_wait = cfg.server.batch_max_queue_wait_s if priority == BATCH else cfg.server.interactive_max_queue_wait_s
        return Job(
            segments=tuple(req.segments),
            target_language=target,
            source_language=source,
            model=model.name,
            deadline=now + budget - DEADLINE_MARGIN_S,
            max_queue_wait_s=max_wait,
            task_id=req.task_id,
            priority=priority,
            max_output_tokens=req.max_output_tokens,
            glossary=glossary,
            mime_type=req.mime_type or "text/plain",
            allow_truncated=req.allow_truncated,
            use_cache=not req.no_cache,
        )

    def glossary(self, req: pb.TranslateRequest) -> tuple[tuple[str, str], ...]:
        """The request's glossary as (source, target) terms: each term one non-empty line, within the bounds."""
        limits = self.config.server
        if len(req.glossary) > limits.max_glossary_entries:
            raise InvalidRequest(
                f"glossary: {len(req.glossary)} entries, over the limit of {limits.max_glossary_entries}"
            )
        for i, entry in enumerate(req.glossary):
            for name, term in (("source", entry.source), ("target", entry.target)):
                where = f"glossary[{i}].{name}"
                if not term.strip():
                    raise InvalidRequest(f"{where}: required (a term to translate and its translation)")
                if len(term) > limits.max_glossary_term_chars:
                    raise InvalidRequest(
                        f"{where}: {len(term)} characters, over the limit of {limits.max_glossary_term_chars}"
                    )
                if LINE_BREAKING.search(term):
                    raise InvalidRequest(f"{where}: must be one line with no control characters, got {quote(term)}")
        return tuple((g.source, g.target) for g in req.glossary)

    def model_for(self, requested: str, target: str) -> ModelConfig:
        """The model that serves the request: the one named (or the default), else its first fallback that
        speaks the target."""
        cfg = self.config
        model = cfg.model(requested)
        if model is None:
            raise UnknownModel(f"model: unknown model {quote(requested)}; configured: {', '.join(cfg.models)}")
        for m in self._chain(model.name):
            if not m.languages or target in m.languages:
                return m
        raise InvalidRequest(
            f"target_language: {quote(target)} is not supported by {model.name} or its fallbacks "
            f"(supported: {', '.join(model.languages)})"
        )
