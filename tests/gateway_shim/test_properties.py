"""Properties of the parsers and the segmenter over arbitrary text: any Unicode (surrogates, RTL, combining marks,
NUL), huge and deeply nested values — a 4xx with a message or N segments out, never a crash or a hang."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from translane.segment import join_pieces, split_text
from translane.tokens import count_tokens
from translane.wire import WireError, parse_chat, parse_custom, split_message

# Every code point, lone surrogates included, with the separators and markup the plugin uses mixed in.
_PIECES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40),
    st.sampled_from(
        ["\n", "\n\n%%\n\n", "- id: 1\n  text: ", "<yaml>", "</yaml>", "```yaml\n", "{0}", "\u202e", "\u0301"]
    ),
)
ANY_TEXT = st.lists(_PIECES, max_size=12).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=30,
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(ANY_TEXT)
def test_split_message_always_renders_back_n_for_n(text: str) -> None:
    batch = split_message(text)
    assert batch.segments
    rendered = batch.render(list(batch.segments))
    # Rendering the paragraphs as their own translations gives the batch back in its form.
    again = split_message(rendered) if batch.form != "single" else batch
    assert len(again.segments) == len(batch.segments) or batch.form == "single"


@FAST
@given(ANY_TEXT, st.integers(min_value=1, max_value=50))
def test_the_segmenter_splits_and_rejoins_any_text(text: str, limit: int) -> None:
    pieces = split_text(text, limit, count_tokens)
    assert join_pieces(pieces, [p.text for p in pieces]) == text
    # Each piece fits the limit (a single character that alone is over it aside).
    assert all(count_tokens(p.text) <= limit or len(p.text) == 1 for p in pieces), pieces


@FAST
@given(JSON_VALUES)
def test_parse_chat_takes_any_json_body_or_names_what_is_wrong(body: Any) -> None:
    if not isinstance(body, dict):
        body = {"messages": body}
    try:
        chat = parse_chat(body, "", "zh")
    except WireError as exc:
        assert 400 <= exc.status < 500 and exc.message
        json.loads(exc.body())  # the error itself always encodes
        return
    if chat.batch is not None:
        assert chat.batch.segments


@FAST
@given(JSON_VALUES)
def test_parse_custom_takes_any_json_body_or_names_what_is_wrong(body: Any) -> None:
    if not isinstance(body, dict):
        body = {"text_list": body}
    try:
        req = parse_custom(body, "zh")
    except WireError as exc:
        assert 400 <= exc.status < 500 and exc.message
        json.loads(exc.body())
        return
    assert all(isinstance(t, str) for t in req.texts)


@FAST
@given(
    st.lists(
        st.sampled_from(["12", "word", "A sentence.", "这是一句话。", "\n", " ", "\n\n"]), min_size=1, max_size=400
    ),
    st.integers(min_value=1, max_value=60),
)
def test_the_segmenter_reads_the_text_a_bounded_number_of_times(parts: list[str], limit: int) -> None:
    """Counting tokens is the segmenter's cost: it counts each character a bounded number of times (a few dozen
    at most, the bisections within a piece's length), whatever the text's shape — counting every candidate
    piece again read a text of short lines, or a word longer than the limit, over and over to its end."""
    text = "".join(parts) * 5
    read = 0

    def count(s: str) -> int:
        nonlocal read
        read += len(s)
        return count_tokens(s)

    split_text(text, limit, count)
    assert read <= 32 * len(text) + 1000, (read, len(text))
