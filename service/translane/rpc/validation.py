"""A TranslateRequest checked field by field and made into the engine's Job; INVALID_ARGUMENT names the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..config import Config, ModelConfig
from ..contract import LINE_BREAKING, MAX_TASK_ID_CHARS, task_id_problem
from ..engine import Job
from ..errors import InvalidRequest, PermissionDenied, UnknownModel, quote
from ..lanes import BATCH, INTERACTIVE
from ..languages import NAMES, normalize_language
from ..tenants import Tenant
from ..upstream import SegmentCall, prompt_tokens
from ..v1 import translate_pb2 as pb

__all__ = ["CHAT_ROLES", "DEADLINE_MARGIN_S", "MAX_MESSAGES", "MAX_TASK_ID_CHARS", "MIME_TYPES", "Validator"]

MIME_TYPES = ("text/plain", "text/html")
# Answer a little before the caller's deadline, so a shed request hears why.
DEADLINE_MARGIN_S = 0.02
_PRIORITIES = frozenset(pb.Priority.values())
# A passthrough chat: the roles it may hold, and how many messages.
CHAT_ROLES = ("system", "developer", "user", "assistant")
MAX_MESSAGES = 256


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
        if req.messages:
            return self.passthrough(req, now, time_remaining)
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
        self.common(req)
        glossary = self.glossary(req)
        model = self.model_for(req.model, target)
        return Job(
            segments=tuple(req.segments),
            target_language=target,
            source_language=source,
            model=model.name,
            task_id=req.task_id,
            max_output_tokens=req.max_output_tokens,
            glossary=glossary,
            mime_type=req.mime_type or "text/plain",
            allow_truncated=req.allow_truncated,
            use_cache=not req.no_cache,
            **self.timing(req, now, time_remaining),
        )

    def common(self, req: pb.TranslateRequest) -> None:
        """The fields every request checks alike: task id and priority."""
        problem = task_id_problem(req.task_id)
        if problem:
            raise InvalidRequest(f"task_id: {problem}; got {quote(req.task_id)}")
        if req.priority not in _PRIORITIES:
            raise InvalidRequest(f"priority: unknown value {req.priority}; accepted: {', '.join(pb.Priority.keys())}")

    def for_tenant(self, job: Job, requested: str, tenant: Tenant | None) -> Job:
        """The job as its caller's tenant may send it: the model it named allowed (PERMISSION_DENIED naming
        it otherwise), interactive work lowered to batch under a "batch" ceiling, and the tenant named."""
        if tenant is None:
            return job
        if not tenant.may_use(requested):
            raise PermissionDenied(
                f"model: tenant {tenant.name} may not use {quote(requested)}; its models: {', '.join(tenant.models)}"
            )
        if tenant.priority_ceiling == "batch" and job.priority == INTERACTIVE:
            # Lowered, not refused: clients send interactive by default, and the work is still worth doing.
            wait = self.config.server.batch_max_queue_wait_s
            return dataclasses.replace(job, tenant=tenant.name, priority=BATCH, max_queue_wait_s=wait)
        return dataclasses.replace(job, tenant=tenant.name)

    def timing(self, req: pb.TranslateRequest, now: float, time_remaining: float | None) -> dict[str, Any]:
        """The job's deadline, priority and longest queue wait."""
        cfg = self.config
        budget = cfg.server.default_deadline_s
        if time_remaining is not None:
            budget = min(time_remaining, budget)
        priority = BATCH if req.priority == pb.PRIORITY_BATCH else INTERACTIVE
        max_wait = cfg.server.batch_max_queue_wait_s if priority == BATCH else cfg.server.interactive_max_queue_wait_s
        return {"deadline": now + budget - DEADLINE_MARGIN_S, "max_queue_wait_s": max_wait, "priority": priority}

    def passthrough(self, req: pb.TranslateRequest, now: float, time_remaining: float | None) -> Job:
        """A chat sent as written: roles and sizes checked, on a chat model, whole (never split, never cached)."""
        cfg = self.config
        if req.segments:
            raise InvalidRequest("segments: must be empty when messages are given (a chat is answered as one reply)")
        if len(req.messages) > MAX_MESSAGES:
            raise InvalidRequest(f"messages: {len(req.messages)} messages, over the limit of {MAX_MESSAGES}")
        for i, m in enumerate(req.messages):
            if m.role not in CHAT_ROLES:
                raise InvalidRequest(f"messages[{i}].role: must be one of {', '.join(CHAT_ROLES)}, got {quote(m.role)}")
        if not any(m.role == "user" and m.content.strip() for m in req.messages):
            raise InvalidRequest("messages: a user message with text is required")
        total = sum(len(m.content) for m in req.messages)
        if total > cfg.server.max_segment_chars:
            raise InvalidRequest(
                f"messages: {total} characters in all, over the limit of {cfg.server.max_segment_chars}"
            )
        for name, value in (("target_language", req.target_language), ("source_language", req.source_language)):
            code = normalize_language(value)
            if code and code not in self.languages:
                raise InvalidRequest(f"{name}: unknown language {quote(value)}")
        self.common(req)
        model = cfg.model(req.model)
        if model is None:
            raise UnknownModel(f"model: unknown model {quote(req.model)}; configured: {', '.join(cfg.models)}")
        if model.api_style != "chat_completions":
            raise InvalidRequest(
                f"model: {model.name} speaks the {model.api_style} API, which translates text and cannot answer "
                "a chat as written; name a chat model for messages"
            )
        messages = tuple((m.role, m.content) for m in req.messages)
        counted = prompt_tokens(model, SegmentCall("", "", messages=messages))
        if counted > model.max_input_tokens:
            raise InvalidRequest(
                f"messages: about {counted} tokens, over {model.name}'s input limit of {model.max_input_tokens}"
            )
        last_user = next(m.content for m in reversed(req.messages) if m.role == "user" and m.content.strip())
        return Job(
            segments=(last_user,),
            target_language=normalize_language(req.target_language),
            source_language=normalize_language(req.source_language),
            model=model.name,
            task_id=req.task_id,
            max_output_tokens=req.max_output_tokens,
            # A chat's reply is what the model said: cut at the limit if so (marked), never retried in pieces.
            allow_truncated=True,
            use_cache=False,
            messages=messages,
            **self.timing(req, now, time_remaining),
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
