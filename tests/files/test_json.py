"""JSON through `translane file`: only the translated string values change, every other byte is the source's;
without --keys, values that look like identifiers, numbers, versions or URLs are kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from translane.server import RunningServer
from translane.tools.files._doc import parse
from translane.tools.files._json import json_strings
from translane.tools.files._runner import FileSettings, translate_files
from translane.tools.files._values import looks_like_code, looks_like_identifier

# Any JSON value (NaN aside: no JSON file holds it), texts and keys with any character.
values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# The ways a file may be written: indentation, separators, escapes, key order, a final newline.
styles = st.fixed_dictionaries(
    {
        "indent": st.sampled_from([None, 0, 2, 4, "\t"]),
        "separators": st.sampled_from([None, (",", ":"), (", ", ": "), (" ,", " : ")]),
        "ensure_ascii": st.booleans(),
        "sort_keys": st.booleans(),
    }
)


def written(value: Any, style: dict[str, Any], end: str) -> str:
    return json.dumps(value, **style) + end


@settings(max_examples=300, deadline=None)
@given(value=values, style=styles, end=st.sampled_from(["", "\n", "\r\n", "  \n\n"]), keys=st.booleans())
def test_an_identity_translation_gives_back_the_same_bytes(
    value: Any, style: dict[str, Any], end: str, keys: bool
) -> None:
    text = written(value, style, end)
    doc = parse(text, "json", keys=("*",) if keys else ())
    assert doc.render({seg.index: seg.text for seg in doc.segments}) == text


@settings(max_examples=200, deadline=None)
@given(value=values, style=styles, new=st.text(min_size=1))
def test_a_translation_changes_only_its_string_token(value: Any, style: dict[str, Any], new: str) -> None:
    text = written(value, style, "\n")
    doc = parse(text, "json", keys=("*",))
    translations = {seg.index: new + seg.text for seg in doc.segments}
    out = doc.render(translations)
    # The same document with each value translated: keys, numbers, structure and order unchanged ...
    assert json.loads(out) == _mapped(json.loads(text), lambda s: new + s)
    # ... and between the string tokens, every byte is the source's.
    gaps = [text[a.end : b.start] for a, b in zip(doc.segments, doc.segments[1:], strict=False)]
    pos = 0
    for gap in gaps:
        found = out.find(gap, pos)
        assert found >= 0
        pos = found + len(gap)
    if doc.segments:
        assert out.startswith(text[: doc.segments[0].start]) and out.endswith(text[doc.segments[-1].end :])


def _mapped(value: Any, f: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mapped(v, f) for k, v in value.items()}
    if isinstance(value, list):
        return [_mapped(v, f) for v in value]
    return f(value) if isinstance(value, str) and value.strip() else value


STRINGS = (
    '{\n    "title": "Caf\\u00e9 and tea",\n    "id": "menu_main",\n    "count": 3,\n'
    '    "items": [ "Open the door" , "v1.2.3" ],\n    "url": "https:\\/\\/example.com\\/a",\n'
    '    "empty": "",\n    "nested": {"z": "Last one", "a": "First one"}\n}'
)


def test_the_file_keeps_its_indentation_order_escapes_and_end() -> None:
    doc = parse(STRINGS, "json")
    assert [s.where for s in doc.segments] == ["title", "items.0", "nested.z", "nested.a"]
    out = doc.render({0: "Café et thé", 1: 'Ouvrez "la" porte', 2: "Le dernier", 3: "Le premier"})
    # Written as the file writes non-ASCII text (as \u escapes); all else byte for byte, no final newline added.
    assert out == (
        STRINGS.replace('"Caf\\u00e9 and tea"', '"Caf\\u00e9 et th\\u00e9"')
        .replace('"Open the door"', '"Ouvrez \\"la\\" porte"')
        .replace('"Last one"', '"Le dernier"')
        .replace('"First one"', '"Le premier"')
    )
    # A file that writes its text as UTF-8 gets its translations so.
    utf8 = parse('{"a": "Grüße aus Berlin"}\n', "json")
    assert utf8.render({0: "Привет из Берлина"}) == '{"a": "Привет из Берлина"}\n'


@pytest.mark.parametrize(
    "value",
    [
        "start_a1b2",
        "e",
        "menu.start",
        "1.2.3",
        "v2",
        "42",
        "3.14",
        "https://example.com/a?b=c",
        "mailto:ann@example.com",
        "ann@example.com",
        "./images/map.png",
        "C:\\games\\save",
        "deadbeef",
        "0x1F",
        "123e4567-e89b-12d3-a456-426614174000",
        "2024-01-01",
        "2024-01-01T10:00:00Z",
        "en",
        "en-US",
        "zh-Hans",
        "USD",
        "snake_case",
        "camelCase",
        "PascalCase",
        "kebab-case",
        "CONSTANT_NAME",
        "{0}",
        "%s / %d",
        "{{count}}",
        "${name}",
        "#a0b1c2",
    ],
)
def test_values_that_look_like_identifiers_are_not_text(value: str) -> None:
    assert looks_like_identifier(value)


@pytest.mark.parametrize(
    "value", ["Start", "Open the door", "{count} items left", "Sign-in", "Done.", "Größe", "你好", "Hello, world!"]
)
def test_words_and_phrases_are_text(value: str) -> None:
    assert not looks_like_identifier(value) and not looks_like_code(value)


RENPY_LIKE = {
    "dialogue": [
        {"id": "start_a1b2", "who": "e", "what": "You've created a new game."},
        {"id": "start_c3d4", "who": "e", "what": "Once you add a story, this will go away."},
    ],
    "meta": {"version": "1.2.3", "site": "https://example.com", "lang": "en", "updated": "2024-01-01"},
    "menu": {"start": "Start", "quit": "Quit the game"},
}


def test_without_keys_identifiers_are_kept_and_counted() -> None:
    doc = parse(json.dumps(RENPY_LIKE, indent=2), "json")
    assert [s.where for s in doc.segments] == ["dialogue.0.what", "dialogue.1.what", "menu.start", "menu.quit"]
    assert len(doc.notes) == 1 and doc.notes[0].startswith("8 value(s) kept as they are") and "--keys" in doc.notes[0]
    # Keys asked for are translated whatever they look like.
    chosen = parse(json.dumps(RENPY_LIKE), "json", keys=("dialogue.*.id",))
    assert [s.text for s in chosen.segments] == ["start_a1b2", "start_c3d4"] and not chosen.notes


def test_yaml_without_keys_keeps_identifiers_too() -> None:
    doc = parse("title: Hello world\nid: menu_main\nversion: 1.2.3\nurl: https://example.com\n", "yaml")
    assert [s.where for s in doc.segments] == ["title"] and doc.notes


async def test_a_translated_json_file_differs_from_its_source_only_in_translated_values(
    server: RunningServer, tmp_path: Path
) -> None:
    src = tmp_path / "strings.json"
    src.write_bytes(STRINGS.replace("\n", "\r\n").encode())
    summaries, _ = await translate_files(
        [str(src)], FileSettings(f"127.0.0.1:{server.port}", "de", review=str(tmp_path / "review.json"))
    )
    source = src.read_bytes().decode()
    out = (tmp_path / "strings.de.json").read_bytes().decode()
    before, after = json_strings(source), json_strings(out)
    # The same string tokens, with the same bytes between them (CRLF, spacing, the numbers, the keys) ...
    assert len(before) == len(after)
    bounds = [0, *(i for _, _, start, end in before for i in (start, end)), len(source)]
    out_bounds = [0, *(i for _, _, start, end in after for i in (start, end)), len(out)]
    gaps = [source[a:b] for a, b in zip(bounds[::2], bounds[1::2], strict=True)]
    assert gaps == [out[a:b] for a, b in zip(out_bounds[::2], out_bounds[1::2], strict=True)]
    # ... and only the translated ones changed.
    translated = {seg.start for seg in parse(source, "json").segments}
    for (path, value, start, end), (_, new, new_start, new_end) in zip(before, after, strict=True):
        if start in translated:
            assert new != value, path
        else:
            assert out[new_start:new_end] == source[start:end], path
    # The summary says what was kept and how to choose.
    assert "3 value(s) kept as they are" in summaries[0].text() and "--keys" in summaries[0].text()
