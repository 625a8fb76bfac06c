"""Language names and codes in fields and prompts, in English, Chinese and the languages themselves."""

from __future__ import annotations

import pytest
from translane.wire import plugin_code, prompt_languages, resolve


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("zh-CN", "zh"),
        ("zh_TW", "zh-Hant"),
        ("ZH-HK", "zh-Hant"),
        ("en-US", "en"),
        ("pt-BR", "pt"),
        ("Simplified Chinese", "zh"),
        ("Chinese (Traditional)", "zh-Hant"),
        ("中文（繁體）", "zh-Hant"),
        ("简体中文", "zh"),
        ("中文", "zh"),
        ("繁體中文", "zh-Hant"),
        ("日本語", "ja"),
        ("Japanese", "ja"),
        ("日语", "ja"),
        ("한국어", "ko"),
        ("Deutsch", "de"),
        ("français", "fr"),
        ("Español", "es"),
        ("Русский", "ru"),
        ("Tiếng Việt", "vi"),
        ("Bahasa Indonesia", "id"),
        ("Norwegian", "nb"),
        ("Hindi", "hi"),
        ("auto", None),
        ("", None),
        ("Klingon", None),
    ],
)
def test_resolve(value: str, code: str | None) -> None:
    assert resolve(value) == code


@pytest.mark.parametrize(
    ("prompt", "source", "target"),
    [
        (
            "You are a professional Simplified Chinese native translator who needs to fluently translate text "
            "into Simplified Chinese.",
            "",
            "zh",
        ),
        ("你是一位专业的 简体中文 母语翻译者，需要流畅地将文本翻译成 简体中文。", "", "zh"),
        ("Translate to Japanese (output translation only):", "", "ja"),
        ("翻译成 繁體中文（仅输出翻译）：", "", "zh-Hant"),
        ("将以下内容翻译为英文：", "", "en"),
        ("把英文翻译成日语", "en", "ja"),
        ("Translate from English to German", "en", "de"),
        ("Translate English to German", "en", "de"),
        ("English -> 日本語", "en", "ja"),
        ("日本語に翻訳してください", "", "ja"),
        ("한국어로 번역해 주세요", "", "ko"),
        ("Target language: fr", "", "fr"),
        ("Translate into zh-TW, please", "", "zh-Hant"),
        ("请用日语回答", "", "ja"),
        ("Translate into  Simplified   Chinese", "", "zh"),
        # Not languages: a country, a word that happens to be a code, a hyphenated adjective.
        ("Translate it to UK English", "", ""),
        ("Translate into English-speaking style", "", ""),
        ("Send it to me", "", ""),
        ("Germany's German -> English", "de", "en"),
    ],
)
def test_prompt_languages(prompt: str, source: str, target: str) -> None:
    assert prompt_languages([prompt]) == (source, target)


def test_earlier_prompts_win_and_gaps_are_filled_later() -> None:
    assert prompt_languages(["Translate to French:", "Translate from German into Japanese."]) == ("de", "fr")
    assert prompt_languages(["", "no language here"]) == ("", "")


def test_plugin_code() -> None:
    assert [plugin_code(c) for c in ("zh", "zh-Hant", "en")] == ["zh-CN", "zh-TW", "en"]


# The plugin fills {{to}} with its own codes or with names, regions included (its settings' values).
PLUGIN_TARGETS = [
    ("zh-CN", "zh"),
    ("zh-TW", "zh-Hant"),
    ("zh-HK", "zh-Hant"),
    ("en", "en"),
    ("en-US", "en"),
    ("en-GB", "en"),
    ("ja", "ja"),
    ("ko", "ko"),
    ("fr", "fr"),
    ("de", "de"),
    ("es", "es"),
    ("it", "it"),
    ("pt", "pt"),
    ("pt-BR", "pt"),
    ("pt-PT", "pt"),
    ("ru", "ru"),
    ("ar", "ar"),
    ("th", "th"),
    ("vi", "vi"),
    ("id", "id"),
    ("ms", "ms"),
    ("tr", "tr"),
    ("pl", "pl"),
    ("nl", "nl"),
    ("uk", "uk"),
    ("no", "nb"),
    ("nb", "nb"),
    ("hi", "hi"),
    ("he", "he"),
    ("sv", "sv"),
    ("cs", "cs"),
    ("Simplified Chinese", "zh"),
    ("Traditional Chinese", "zh-Hant"),
    ("English", "en"),
    ("Japanese", "ja"),
    ("Italian", "it"),
    ("Indonesian", "id"),
    ("Ukrainian", "uk"),
    ("Portuguese (Brazil)", "pt"),
    ("Hebrew", "he"),
    ("Norwegian", "nb"),
    ("简体中文", "zh"),
    ("繁體中文", "zh-Hant"),
]


@pytest.mark.parametrize(("to", "code"), PLUGIN_TARGETS)
def test_every_plugin_target_is_read_from_its_instruction(to: str, code: str) -> None:
    for prompt in (f"Translate to {to}:", f"Translate to {to} (output translation only):", f"Translate to {to}"):
        assert prompt_languages([prompt])[1] == code, prompt


def test_a_word_that_is_a_code_counts_only_where_it_ends_the_instruction() -> None:
    assert prompt_languages(["Translate to it:"])[1] == "it"
    assert prompt_languages(["Please translate it to no one else."])[1] == ""
    assert prompt_languages(["Translate to hi there, friend"])[1] == ""
