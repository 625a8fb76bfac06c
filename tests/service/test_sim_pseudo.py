"""The simulator's default answer: a pseudo-translation that a language identifier reads as the target, with
placeholders, markup, numbers, spacing and the plugin's multi-paragraph forms kept byte for byte."""

from __future__ import annotations

import re

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lingua import Language, LanguageDetectorBuilder
from translane.config import load_config
from translane.sim import SimConfig
from translane.sim._call import Call, translate
from translane.sim._pseudo import VOCABULARY
from translane.tools.files._leaks import LeakChecker
from translane.wire.plugin import split_message

from ..conftest import start_sim

TR = "doubao-seed-translation-250915"
SENTENCES = [
    "Rate limits are per account, not per pod, so every replica of the service shares them.",
    "It was a dark and stormy night, and the keeper waited for the light to return to the old tower.",
    "Install it with {0}, then read <b0>the documentation</b0> before you start the server for the first time.",
    "Please send the signed contract to our office before Friday, or call us if anything is unclear.",
    "The children walked home along the river, talking about the strange ship they had seen that morning.",
]
# Short answers, where a marker's letters weigh most against the language's own.
SHORT = ["Hello, friend.", "Save changes?", "Notes for the reader", "Open the door.", "The wind howled all night."]
# Our codes lingua names otherwise.
LINGUA_CODE = {"zh-Hant": "zh", "fil": "tl"}
KNOWN = {lang.iso_code_639_1.name.lower() for lang in Language.all()}


def sim_says(text: str, target: str) -> str:
    return translate(Call("m", text, "auto", target, 0, False, False), pseudo=True)


@pytest.fixture(scope="module")
def lingua_all() -> object:
    """Every language lingua knows (75), in its light mode: the hardest neighbours to be told apart from."""
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


@pytest.mark.parametrize("target", [t for t in VOCABULARY if LINGUA_CODE.get(t, t) in KNOWN])
def test_lingua_reads_each_answer_as_its_target_language(lingua_all: object, target: str) -> None:
    for sentence in SENTENCES:
        out = sim_says(sentence, target)
        assert out.startswith("[sim] ")
        found = lingua_all.detect_language_of(out)  # type: ignore[attr-defined]
        assert found is not None, out
        assert found.iso_code_639_1.name.lower() == LINGUA_CODE.get(target, target), out


@pytest.mark.parametrize("target", ["zh", "zh-Hant", "ja", "ko", "ru", "uk", "ar", "hi", "el", "th", "he", "de", "fr"])
def test_short_answers_pass_the_file_tools_leak_check(target: str) -> None:
    checker = LeakChecker(target, "en")
    for text in SHORT:
        out = sim_says(text, target)
        assert checker.check(0, text, out) is None, out


def test_each_script_is_the_targets() -> None:
    scripts = {
        "zh": r"[\u4e00-\u9fff]",
        "ja": r"[\u3040-\u309f]",  # hiragana: what tells Japanese from Chinese
        "ko": r"[\uac00-\ud7af]",
        "ru": r"[\u0400-\u04ff]",
        "uk": r"[іїєґ]",
        "sr": r"[ђћџљњј]",
        "ar": r"[\u0600-\u06ff]",
        "fa": r"[پچژگی]",
        "ur": r"[ےںٹڈ]",
        "el": r"[\u0370-\u03ff]",
        "th": r"[\u0e00-\u0e7f]",
        "hi": r"[\u0900-\u097f]",
        "he": r"[\u0590-\u05ff]",
    }
    text = " ".join(SENTENCES)
    for target, script in scripts.items():
        out = sim_says(text, target)
        assert re.search(script, out), target
        assert not re.search(r"[A-Za-z]", out.removeprefix("[sim] ").replace("{0}", "").replace("b0>", "")), target
    # Traditional characters for zh-Hant, simplified for zh.
    simplified, traditional = set("们这国说为时现问题学习没么经"), set("們這國說為時現問題學習沒麼經")
    hant, hans = sim_says(text, "zh-Hant"), sim_says(text, "zh")
    assert set(hant) & traditional and not set(hant) & simplified
    assert set(hans) & simplified and not set(hans) & traditional


def test_targets_are_read_as_clients_name_them() -> None:
    for name in ("zh-TW", "zh-Hant", "Traditional Chinese"):
        assert not set(sim_says("Good morning, my friends.", name)) & set("们这国说为时现问题学习没么经")
    assert sim_says("Good morning", "pt-BR") == sim_says("Good morning", "pt")
    assert sim_says("Good morning", "German") == sim_says("Good morning", "de")
    # A target it has no words for: the text as sent, under the echo's mark.
    assert sim_says("Hello {0}", "Klingon") == "[sim auto->Klingon] Hello {0}"
    assert translate(Call("m", "Hello", "en", "de", 0, False, False)) == "[sim en->de] Hello"


def test_what_a_model_must_not_touch_comes_back_byte_for_byte() -> None:
    kept = [
        "{0}",
        "{name}",
        "{{count}}",
        "${user}",
        "%s",
        "%(total)d",
        "%5.2f",
        "<b0>",
        "</b0>",
        '<a href="https://example.com/a?b=c&amp;d=e" title="Read the docs">',
        "</a>",
        "&amp;",
        "&#169;",
        "&nbsp;",
        "`pip install translane`",
        "https://example.com/docs/start.html",
        "www.example.org",
        "keeper@example.com",
        "3.14",
        "1,024",
        "2025-01-31",
    ]
    text = (
        "Install {0} for {name} ({{count}} items, ${user}): %s of %(total)d at %5.2f, <b0>bold</b0> and "
        '<a href="https://example.com/a?b=c&amp;d=e" title="Read the docs">the docs</a> &amp; &#169;&nbsp;more; '
        "run `pip install translane`, see https://example.com/docs/start.html or www.example.org, write to "
        "keeper@example.com; pi is 3.14, a block 1,024 bytes, due 2025-01-31.\n\nA second paragraph.\n"
    )
    for target in ("de", "zh", "ja", "ru", "ar", "th"):
        out = sim_says(text, target)
        pos = 0
        for run in kept:
            found = out.find(run, pos)
            assert found >= 0, (target, run, out)
            pos = found + len(run)
        assert out.count("\n") == text.count("\n") and out.endswith("\n")
        assert "bold" not in out and "docs</a>" not in out and "paragraph" not in out


def test_the_plugins_multi_paragraph_forms_still_parse() -> None:
    separated = "First paragraph here.\n\n%%\n\nSecond one, with {0}.\n\n%%\n\nThird."
    yaml = "- id: 1\n  text: Hello {0}\n- id: 2\n  text: <b0>Bold</b0>: a colon\n- id: 7\n  text: two\nlines"
    for sent in (separated, yaml):
        asked = split_message(sent)
        for target in ("de", "zh", "ja"):
            reply = split_message(sim_says(sent, target))
            assert reply.form == asked.form and len(reply.segments) == len(asked.segments)
            assert [i.ident for i in reply.items] == [i.ident for i in asked.items]
            assert all(s.startswith("[sim] ") for s in reply.segments), reply.segments
    assert translate(Call("m", yaml, "auto", "zh", 0, False, False)).startswith("- id: 1\n  text: [sim auto->zh] Hello")


def test_the_same_text_always_gets_the_same_answer() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    assert sim_says(text, "de") == sim_says(text, "de") != sim_says(text, "fr")
    # Repeated words take different words of the vocabulary: no answer is one word over and over.
    out = sim_says("the the the the the the the the", "de")
    assert len(set(out.removeprefix("[sim] ").split())) > 4


_WORDS = st.text(alphabet=st.characters(categories=("Ll", "Lu")), min_size=1, max_size=12)
_KEPT = st.one_of(
    st.integers(0, 20).map(lambda n: f"{{{n}}}"),
    st.integers(0, 9).map(lambda n: f"<b{n}>"),
    st.integers(0, 9).map(lambda n: f"</b{n}>"),
    st.sampled_from(["%s", "%d", "%(name)s", "{{x}}", "{user}", "&amp;", "&lt;", "&#8212;", "`code()`"]),
    st.sampled_from(['<a href="https://x.org/p?q=1" title="A title">', "</a>", '<img src="a.png" alt="An image"/>']),
    st.sampled_from([" https://example.com/a/b ", " www.example.org ", " someone@example.com "]),
    st.integers(0, 10**6).map(str),
    st.sampled_from(["\n", "\n\n", "\n\n%%\n\n"]),
)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.one_of(_WORDS, _KEPT), max_size=30),
    gaps=st.lists(st.sampled_from([" ", "", ", ", ". "]), min_size=30, max_size=30),
    target=st.sampled_from(["de", "fr", "zh", "ja", "ko", "ru", "ar", "th", "hi"]),
)
def test_placeholders_markup_numbers_and_newlines_survive_any_text(
    parts: list[str], gaps: list[str], target: str
) -> None:
    text = "".join(p + g for p, g in zip(parts, gaps, strict=False))
    out = sim_says(text, target).removeprefix("[sim] ")
    kept = [p.strip() for p in parts if not p.isalpha()]
    pos = 0
    for run in kept:
        found = out.find(run, pos)
        assert found >= 0, (run, text, out)
        pos = found + len(run)
    assert re.findall(r"\d", out) == re.findall(r"\d", text)
    assert out.count("\n") == text.count("\n")
    assert out.count("%%") == text.count("%%")


async def test_the_simulator_as_users_run_it_answers_in_the_target_language() -> None:
    runner, sim = await start_sim(SimConfig.from_config(load_config(env={})))
    try:
        async with aiohttp.ClientSession() as http:

            async def ask(target: str) -> str:
                body = {
                    "model": TR,
                    "input": [
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "input_text",
                                    "text": "Hello {0}, the keeper is <b0>home</b0>.",
                                    "translation_options": {"target_language": target},
                                }
                            ],
                        }
                    ],
                }
                async with http.post(f"{sim.url}/responses", json=body) as r:
                    assert r.status == 200
                    return str((await r.json())["output"][-1]["content"][0]["text"])

            ja = await ask("ja")
            assert ja.startswith("[sim] ") and re.search(r"[\u3040-\u309f]", ja)
            assert "{0}" in ja and "<b0>" in ja and "</b0>" in ja and "Hello" not in ja
            await sim_post(http, sim.root, {"pseudo_translate": 0})
            assert await ask("ja") == "[sim auto->ja] Hello {0}, the keeper is <b0>home</b0>."
    finally:
        await runner.cleanup()


async def sim_post(http: aiohttp.ClientSession, root: str, changes: dict[str, float]) -> None:
    async with http.post(f"{root}/_sim/config", json=changes) as r:
        assert r.status == 200


def test_translane_sim_answers_in_the_target_language_unless_told_to_echo() -> None:
    from translane.cli import _parser, _sim_config

    cfg = load_config(env={})
    assert _sim_config(cfg, _parser().parse_args(["sim"])).pseudo_translate == 1.0
    assert _sim_config(cfg, _parser().parse_args(["sim", "--echo"])).pseudo_translate == 0.0
    assert _sim_config(cfg, _parser().parse_args(["up", "--echo"])).pseudo_translate == 0.0
