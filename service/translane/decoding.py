"""Requests whose bytes do not parse: answered INVALID_ARGUMENT naming the field, where grpc would say UNKNOWN.

protobuf's DecodeError says only that a message is bad; a short walk over the wire format finds
which field (`segments[1]: not valid UTF-8`), so the caller hears what to fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import descriptor
from google.protobuf.message import DecodeError, Message

__all__ = ["Undecodable", "parser", "streaming", "unary"]

_M = TypeVar("_M", bound=Message)
_Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]
_Refuse = Callable[[str, "Undecodable", grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]
# Nesting a request may have: far past any of ours, well short of the stack.
_MAX_MESSAGE_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request whose bytes do not parse, with what is wrong with them; never handed to a servicer method."""

    message: str


def parser(kind: type[_M]) -> Callable[[bytes], _M | Undecodable]:
    """A request deserializer that answers Undecodable where `kind.FromString` raises (grpc would say UNKNOWN)."""

    def parse(data: bytes) -> _M | Undecodable:
        try:
            return kind.FromString(data)
        except DecodeError:
            name = kind.DESCRIPTOR.full_name
            where = _first_bad_field(cast(descriptor.Descriptor, kind.DESCRIPTOR), data)
            if where is None:
                return Undecodable(f"request: not a valid {name} (corrupt protobuf)")
            return Undecodable(f"{where[0]}: {where[1]} (the request is not a valid {name})")

    return parse


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, next position) of the varint at `pos`; None when it is cut short or overlong."""
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None


def _first_bad_field(
    message: descriptor.Descriptor, data: bytes, prefix: str = "", depth: int = 0
) -> tuple[str, str] | None:
    """(field, what is wrong) for the first field of `data` that does not parse: ("glossary[2].target", ...)."""
    parent = prefix.rstrip(".") or "request"
    seen: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        key = _varint(data, pos)
        if key is None or key[0] >> 3 == 0:
            return parent, f"corrupt protobuf (no valid field key at byte {pos})"
        number, wire, pos = key[0] >> 3, key[0] & 7, key[1]
        field = message.fields_by_number.get(number)
        # A field we do not know is named by its number, on the message that holds it.
        where, unknown = (parent, f"field number {number}, ") if field is None else (prefix + field.name, "")
        if field is not None and field.is_repeated:
            seen[number] = seen.get(number, -1) + 1
            where += f"[{seen[number]}]"
        if wire == 0:
            value = _varint(data, pos)
            pos = value[1] if value is not None else len(data) + 1
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length = _varint(data, pos)
            if length is None:
                return where, f"truncated ({unknown}no length)"
            start, pos = length[1], length[1] + length[0]
            if pos > len(data):
                return where, f"truncated ({unknown}{len(data) - start} of {length[0]} bytes)"
            if field is not None and field.type == descriptor.FieldDescriptor.TYPE_STRING:
                try:
                    data[start:pos].decode("utf-8")
                except UnicodeDecodeError as exc:
                    return where, f"not valid UTF-8 (byte {exc.start})"
            elif field is not None and field.message_type is not None and depth < _MAX_MESSAGE_DEPTH:
                found = _first_bad_field(field.message_type, data[start:pos], where + ".", depth + 1)
                if found is not None:
                    return found
        else:
            return where, f"corrupt protobuf ({unknown}wire type {wire})"
        if pos > len(data):
            return where, f"truncated ({unknown}wire type {wire})"
    return None


def unary(rpc: str, method: _Handler, refuse: _Refuse) -> _Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Undecodable):
            await refuse(rpc, request, context)
        return await method(request, context)

    return handle


def streaming(rpc: str, method: _Handler, refuse: _Refuse) -> _Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):
            await refuse(rpc, request, context)
        async with contextlib.aclosing(method(request, context)) as answers:
            async for answer in answers:
                yield answer

    return handle
