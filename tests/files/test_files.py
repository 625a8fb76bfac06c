"""translane file: structure kept byte for byte, every segment translated, leaks found and repaired, resumable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from translane.config import load_config
from translane.files._doc import load
from translane.files._leaks import LeakChecker
from translane.files._runner import FileSettings, apply_review, check_file, state_path, translate_files
from translane.server import RunningServer
from translane.sim import SimConfig

from ..conftest import Sim

TR = "doubao-seed-translation-250915"

MARKDOWN = """---
title: "A Small Guide"
author: Someone
---
# Getting started

Install it with `pip install x`, then read [the docs](https://example.com/docs "Docs").

- First item with **bold** text
- Second item

| Name | Meaning |
| --- | --- |
| rate | Requests per minute |

```python
print("keep me")
```

<div>raw html block</div>
"""

SRT = """1
00:00:01,000 --> 00:00:03,500
Hello, <i>my friend</i>.

2
00:00:04,000 --> 00:00:06,000
Where are you going
this evening?
"""

VTT = """WEBVTT

intro
00:00.500 --> 00:02.000 align:start
Good morning.

00:02.500 --> 00:04.000
See you <b>soon</b>.
"""

RENPY = {
    "dialogue": [
        {"id": "start_a1b2", "who": "e", "what": "You've created a new game."},
        {"id": "start_c3d4", "who": "e", "what": "Once you add a story, this will go away."},
    ],
    "strings": [{"old": "Start", "new": "Start"}],
    "version": 3,
}


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}))


def settings(server: RunningServer, tmp_path: Path, target: str = "de", **kw: object) -> FileSettings:
    return FileSettings(
        f"127.0.0.1:{server.port}", target, review=str(tmp_path / "review.json"), **kw  # type: ignore[arg-type]
    )


async def admitted(sim: Sim) -> int:
    return int(sum(m["admitted"] for m in (await sim.stats())["models"].values()))


@pytest.fixture(autouse=True)
async def pseudo(sim: Sim) -> None:
    """The simulator answers in target-language words, so the leak check sees real-looking translations."""
    await sim.set(pseudo_translate=1)


async def test_markdown_keeps_its_structure_and_translates_every_text(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "guide.md"
    src.write_text(MARKDOWN, encoding="utf-8")
    summaries, review = await translate_files([str(src)], settings(server, tmp_path))
    out = (tmp_path / "guide.de.md").read_text(encoding="utf-8")
    for kept in (
        "---\ntitle: \"",
        "author: Someone\n---\n# ",
        "`pip install x`",
        '(https://example.com/docs "Docs")',
        "| --- | --- |",
        '```python\nprint("keep me")\n```\n\n<div>raw html block</div>\n',
        "- ",
    ):
        assert kept in out, kept
    doc = load(str(src))
    assert summaries[0].segments == len(doc.segments) >= 8
    assert out.count("[sim auto->de]") == len(doc.segments)
    assert 'title: "[sim auto->de] ' in out and "A Small Guide" not in out
    assert "| [sim auto->de] " in out and "Requests per minute" not in out
    assert not review


@pytest.mark.parametrize(("name", "text"), [("talk.srt", SRT), ("talk.vtt", VTT)])
async def test_subtitles_keep_ids_timings_and_tags(server: RunningServer, tmp_path: Path, name: str, text: str) -> None:
    src = tmp_path / name
    src.write_text(text, encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path, "fr"))
    out = (tmp_path / name.replace(".", ".fr.")).read_text(encoding="utf-8")
    source_lines, out_lines = text.split("\n"), out.split("\n")
    for a, b in zip(source_lines, out_lines, strict=False):
        if "-->" in a or a.strip().isdigit() or a in ("WEBVTT", "intro", ""):
            assert a == b
    assert out.count("[sim auto->fr]") == len(load(str(src)).segments)
    # Styling tags went to the model as placeholders and came back where they were.
    assert ("<i>" in out and "</i>" in out) if name.endswith(".srt") else ("<b>" in out and "</b>" in out)


async def test_renpy_json_translates_dialogue_only(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "script.json"
    src.write_text(json.dumps(RENPY, indent=2) + "\n", encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path, "ja", preset="renpy"))
    out = json.loads((tmp_path / "script.ja.json").read_text(encoding="utf-8"))
    assert [d["id"] for d in out["dialogue"]] == ["start_a1b2", "start_c3d4"]
    assert [d["who"] for d in out["dialogue"]] == ["e", "e"]
    assert all(d["what"].startswith("[sim auto->ja]") for d in out["dialogue"])
    assert out["strings"][0]["old"] == "Start" and out["strings"][0]["new"].startswith("[sim auto->ja]")
    assert out["version"] == 3


async def test_leaks_are_found_and_repaired(server: RunningServer, sim: Sim, tmp_path: Path) -> None:
    # Half the answers come back untranslated; the repair loop asks again past the cache.
    await sim.set(untranslated_rate=0.5)
    paragraphs = [f"Paragraph number {i} tells a short story about the old lighthouse keeper." for i in range(24)]
    src = tmp_path / "story.txt"
    src.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    summaries, review = await translate_files([str(src)], settings(server, tmp_path))
    s = summaries[0]
    assert s.leaks_found > 0 and s.leaks_repaired > 0 and s.leaks_left == len(review)
    out = (tmp_path / "story.de.txt").read_text(encoding="utf-8")
    assert out.count("[sim auto->de]") == 24 - s.leaks_left


async def test_what_cannot_be_repaired_is_reviewed_and_applied(server: RunningServer, sim: Sim, tmp_path: Path) -> None:
    await sim.set(untranslated_rate=1.0)
    src = tmp_path / "notes.md"
    src.write_text("# Notes for the reader\n\nThe lighthouse keeper kept a careful log.\n", encoding="utf-8")
    summaries, review = await translate_files([str(src)], settings(server, tmp_path))
    assert summaries[0].leaks_left == 2 == len(review)
    review_file = tmp_path / "review.json"
    entries = json.loads(review_file.read_text(encoding="utf-8"))
    assert {e["reason"] for e in entries} == {"identical to the original"}
    assert [e["original"] for e in entries] == ["Notes for the reader", "The lighthouse keeper kept a careful log."]
    for e in entries:
        e["translation"] = f"Von Hand übersetzt {e['index']}."
    review_file.write_text(json.dumps(entries), encoding="utf-8")
    assert apply_review(str(review_file)) == 2
    fixed = (tmp_path / "notes.de.md").read_text(encoding="utf-8")
    assert fixed == "# Von Hand übersetzt 0.\n\nVon Hand übersetzt 1.\n"


async def test_a_killed_run_resumes_without_sending_finished_segments_again(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(ttft_s=0.05)
    src = tmp_path / "book.txt"
    src.write_text("\n\n".join(f"Chapter line {i} of the book." for i in range(60)) + "\n", encoding="utf-8")
    s = settings(server, tmp_path, batch_size=1, max_in_flight=2)
    run = asyncio.create_task(translate_files([str(src)], s))
    state = state_path(tmp_path / "book.de.txt")
    for _ in range(500):
        if state.exists() and state.read_text().count("\n") >= 10:
            break
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    sent_before = await admitted(sim)
    assert 0 < sent_before < 60
    summaries, _ = await translate_files([str(src)], s)
    assert summaries[0].resumed >= 10
    assert await admitted(sim) == 60 + (sent_before - summaries[0].resumed)  # only in-flight ones twice, at most
    out = (tmp_path / "book.de.txt").read_text(encoding="utf-8")
    assert out.count("[sim auto->de]") == 60 and "Chapter line" not in out
    again, _ = await translate_files([str(src)], s)
    assert again[0].skipped


def test_the_check_reports_segments_left_in_another_language(tmp_path: Path) -> None:
    translated = tmp_path / "mixed.de.txt"
    translated.write_text(
        "Das Haus ist sehr alt und der Garten ist schön.\n\n"
        "This paragraph was never translated and is still in English.\n",
        encoding="utf-8",
    )
    report = check_file(str(translated), "de")
    assert [leak.index for leak in report.leaks] == [1]
    checker = LeakChecker("de", "en")
    assert checker.check(0, "Hello there, friend.", "Hello there, friend.") is not None
    assert checker.check(0, "Version 2.0", "Version 2.0") is None
    assert checker.check(0, "Go {0} now", "Geh jetzt", lost_placeholders=1) is not None
