"""The plugin's batch forms taken apart and put back together: N paragraphs in, N out, same form."""

from __future__ import annotations

import pytest
from translane.wire import split_message


def roundtrip(text: str) -> str:
    batch = split_message(text)
    return batch.render([f"<{s}>" for s in batch.segments])


def test_single_paragraph_is_the_whole_message() -> None:
    batch = split_message("Hello {0} <b0>world</b0>: fine")
    assert batch.form == "single" and batch.segments == ("Hello {0} <b0>world</b0>: fine",)
    assert batch.instruction == ""


@pytest.mark.parametrize(
    ("text", "instruction", "body"),
    [
        (
            "Translate to Simplified Chinese (output translation only):\n\nHello",
            "Translate to Simplified Chinese (output translation only):",
            "Hello",
        ),
        ("翻译成 简体中文（仅输出翻译）：\n\n你好 {0}", "翻译成 简体中文（仅输出翻译）：", "你好 {0}"),
        ("Translate to French: Bonjour", "Translate to French:", "Bonjour"),
        (
            "Translate the following source text to Japanese, output the translation only.\n"
            "Source Text: Hello there\n\nTranslated Text:",
            "Translate the following source text to Japanese, output the translation only.",
            "Hello there",
        ),
        # Text that merely looks like an instruction stays text.
        ("Note: translate to French later", "", "Note: translate to French later"),
        ("How to translate into German: a guide", "", "How to translate into German: a guide"),
        ("Translation: nothing follows", "", "Translation: nothing follows"),
        ("Translate to German:", "", "Translate to German:"),
    ],
)
def test_instruction_is_split_from_the_text(text: str, instruction: str, body: str) -> None:
    batch = split_message(text)
    assert (batch.instruction, batch.segments) == (instruction, (body,))


def test_separator_form() -> None:
    text = "Translate to Japanese:\n\nA {0}\n\n%%\n\nB\n  indented line\n\n%%\n\n\n\n%%\n\nD"
    batch = split_message(text)
    assert batch.form == "separator"
    assert batch.segments == ("A {0}", "B\n  indented line", "", "D")
    assert roundtrip(text) == "<A {0}>\n\n%%\n\n<B\n  indented line>\n\n%%\n\n<>\n\n%%\n\n<D>"


def test_percent_signs_inside_a_line_are_not_separators() -> None:
    assert split_message("50%% off\n%%%\n").form == "single"


def test_yaml_form_keeps_raw_values() -> None:
    text = '- id: 1\n  text: Hello {0}\n- id: 2\n  text: "quoted" and: colon\n- id: 10\n  text: two\nlines'
    batch = split_message(text)
    assert batch.form == "yaml"
    assert batch.segments == ("Hello {0}", '"quoted" and: colon', "two\nlines")
    assert roundtrip(text) == (
        '- id: 1\n  text: <Hello {0}>\n- id: 2\n  text: <"quoted" and: colon>\n- id: 10\n  text: <two\nlines>'
    )


def test_yaml_inside_tags_with_instructions_around_it() -> None:
    text = (
        "You will get YAML:\n\n<yaml>\n- id: 1\n    source: Hi\n- id: 2\n    source: There\n</yaml>\n\n"
        "Translate each source into Japanese.\n<example>\n- id: 1\n  source: Example\n</example>"
    )
    batch = split_message(text)
    assert batch.form == "yaml" and batch.segments == ("Hi", "There")
    assert "Japanese" in batch.instruction and "<yaml>" not in batch.instruction
    # The field name and indentation come back as they were sent.
    assert roundtrip(text) == "- id: 1\n    source: <Hi>\n- id: 2\n    source: <There>"


def test_render_refuses_a_count_mismatch() -> None:
    batch = split_message("A\n\n%%\n\nB")
    with pytest.raises(ValueError, match="1 translations for 2 paragraphs"):
        batch.render(["only one"])


@pytest.mark.parametrize(
    "text",
    [
        # Fenced, as customised templates often send it.
        "Translate to German:\n\n```yaml\n- id: 1\n  text: Hello\n- id: 2\n  text: World\n```",
        # Bare, after a multi-line instruction, with the template's worked example after it.
        "You are a translator.\nTranslate every item to German, keep the ids.\n\n"
        "- id: 1\n  text: Hello\n- id: 2\n  text: World\n\n"
        "<example>\n- id: 1\n  text: Good morning\n</example>",
        # Tagged, with the example first.
        "<example>\n- id: 9\n  text: Example only\n</example>\nTranslate to German:\n<yaml>\n"
        "- id: 1\n  text: Hello\n- id: 2\n  text: World\n</yaml>",
    ],
)
def test_yaml_batches_in_every_wrapper_keep_ids_and_never_translate_the_instruction(text: str) -> None:
    batch = split_message(text)
    assert batch.form == "yaml"
    assert batch.segments == ("Hello", "World")
    assert [i.ident for i in batch.items] == ["1", "2"]
    assert "Hello" not in batch.instruction and "German" in batch.instruction
    assert "Example only" not in batch.segments and "Good morning" not in batch.segments
    assert batch.render(["Hallo", "Welt"]) == "- id: 1\n  text: Hallo\n- id: 2\n  text: Welt"


def test_yaml_keeps_any_field_name_and_ids_as_sent() -> None:
    batch = split_message("Translate to French:\n\n- id: a7\n  source: One\n- id: 0012\n  source: Two")
    assert batch.segments == ("One", "Two") and [i.ident for i in batch.items] == ["a7", "0012"]
    assert batch.render(["Un", "Deux"]) == "- id: a7\n  source: Un\n- id: 0012\n  source: Deux"


def test_a_paragraph_of_spaces_comes_back_as_it_was_in_the_separator_form() -> None:
    batch = split_message("Hello\n\n%%\n\n   \n\n%%\n\nWorld")
    assert batch.segments == ("Hello", "   ", "World")
    assert batch.render(list(batch.segments)) == "Hello\n\n%%\n\n   \n\n%%\n\nWorld"
