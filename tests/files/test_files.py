"""translane file: structure kept byte for byte, every segment translated, leaks found and repaired, resumable."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from translane.config import load_config
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tools.files._doc import load
from translane.tools.files._html import html_segments
from translane.tools.files._leaks import LeakChecker
from translane.tools.files._runner import FileSettings, apply_review, check_file, state_path, translate_files

from ..conftest import Sim
from ..helpers.eventually import eventually

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
    """The simulator as users run it: answers in pseudo-words of the target language, as the leak check expects."""
    return SimConfig.from_config(load_config(env={}))


def settings(server: RunningServer, tmp_path: Path, target: str = "de", **kw: object) -> FileSettings:
    return FileSettings(
        f"127.0.0.1:{server.port}",
        target,
        review=str(tmp_path / "review.json"),
        **kw,  # type: ignore[arg-type]
    )


def assert_untouched(source: str, segments: list[tuple[int, int]], out: str) -> None:
    """Every byte range of `source` outside the segments appears in `out`, whole and in order."""
    pos, prev = 0, 0
    for start, end in [*segments, (len(source), len(source))]:
        gap = source[prev:start]
        found = out.find(gap, pos)
        assert found >= pos, f"untouched range {gap[:60]!r} is not in the output where it belongs"
        pos, prev = found + len(gap), end


async def admitted(sim: Sim) -> int:
    return int(sum(m["admitted"] for m in (await sim.stats())["models"].values()))


async def test_markdown_keeps_its_structure_and_translates_every_text(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "guide.md"
    src.write_text(MARKDOWN, encoding="utf-8")
    summaries, review = await translate_files([str(src)], settings(server, tmp_path))
    out = (tmp_path / "guide.de.md").read_text(encoding="utf-8")
    for kept in (
        '---\ntitle: "',
        "author: Someone\n---\n# ",
        "`pip install x`",
        '(https://example.com/docs "',  # the link's title is translated: its own segment
        "| --- | --- |",
        '```python\nprint("keep me")\n```\n\n<div>raw html block</div>\n',
        "- ",
    ):
        assert kept in out, kept
    doc = load(str(src))
    assert summaries[0].segments == len(doc.segments) >= 8
    assert out.count("[sim]") == len(doc.segments)
    assert 'title: "[sim] ' in out and "A Small Guide" not in out
    assert "| [sim] " in out and "Requests per minute" not in out
    assert_untouched(MARKDOWN, [(seg.start, seg.end) for seg in doc.segments], out)
    assert not review


@pytest.mark.parametrize(
    ("name", "text"), [("talk.srt", SRT), ("talk.vtt", VTT), ("crlf.srt", SRT.replace("\n", "\r\n"))]
)
async def test_subtitles_keep_ids_timings_and_tags(server: RunningServer, tmp_path: Path, name: str, text: str) -> None:
    src = tmp_path / name
    src.write_text(text, encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path, "fr"))
    with (tmp_path / name.replace(".", ".fr.")).open(encoding="utf-8", newline="") as f:
        out = f.read()
    assert out.count("\r\n") == text.count("\r\n")  # line endings as they were
    source_lines, out_lines = text.split("\n"), out.split("\n")
    for a, b in zip(source_lines, out_lines, strict=False):
        if "-->" in a or a.strip().isdigit() or a in ("WEBVTT", "intro", ""):
            assert a == b
    assert out.count("[sim]") == len(load(str(src)).segments)
    assert_untouched(text, [(seg.start, seg.end) for seg in load(str(src)).segments], out)
    # Styling tags went to the model as placeholders and came back where they were.
    assert ("<i>" in out and "</i>" in out) if name.endswith(".srt") else ("<b>" in out and "</b>" in out)


async def test_renpy_json_translates_dialogue_only(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "script.json"
    src.write_text(json.dumps(RENPY, indent=2) + "\n", encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path, "ja", preset="renpy"))
    out = json.loads((tmp_path / "script.ja.json").read_text(encoding="utf-8"))
    assert [d["id"] for d in out["dialogue"]] == ["start_a1b2", "start_c3d4"]
    assert [d["who"] for d in out["dialogue"]] == ["e", "e"]
    assert all(d["what"].startswith("[sim]") for d in out["dialogue"])
    assert out["strings"][0]["old"] == "Start" and out["strings"][0]["new"].startswith("[sim]")
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
    assert out.count("[sim]") == 24 - s.leaks_left


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
    assert apply_review(str(review_file)).applied == 2
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
    try:
        await eventually(lambda: state.exists() and state.read_text().count("\n") >= 10, 5.0, "ten segments done")
    finally:
        run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # A call the service had sent when the run was cancelled may reach the provider a moment later: count
    # the provider's calls once the service holds none.
    lanes = server.engine.lanes.values()
    await eventually(lambda: all(lane.in_flight == 0 for lane in lanes), 5.0, "the service's calls ended")
    sent_before = await admitted(sim)
    assert 0 < sent_before < 60
    summaries, _ = await translate_files([str(src)], s)
    assert summaries[0].resumed >= 10
    assert await admitted(sim) == 60 + (sent_before - summaries[0].resumed)  # only in-flight ones twice, at most
    out = (tmp_path / "book.de.txt").read_text(encoding="utf-8")
    assert out.count("[sim]") == 60 and "Chapter line" not in out
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


HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>The Keeper</title>
<style>p { margin: 0 }</style><script>var x = "do not translate";</script></head>
<body>
<h1>The Keeper</h1>
<p>It was a <b>dark</b> and <i>stormy</i> night &amp; the light was out.</p>
<p translate="no">LighthouseCorp™</p>
<pre>keep   this    exactly</pre>
<img src="tower.png" alt="The old tower"/>
</body></html>
"""


def chapter(title: str, body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en"><head><title>'
        f"{title}</title></head>\n<body><h1>{title}</h1><p>{body}</p>"
        '<p><img src="../images/map.png" alt="A map of the coast"/></p></body></html>\n'
    )


def build_epub(path: Path) -> dict[str, bytes]:
    """A small EPUB 3 with a nav, an NCX, two chapters with inline markup, an image and a font."""
    import zipfile

    files = {
        "META-INF/container.xml": b'<?xml version="1.0"?>\n<container version="1.0" '
        b'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" '
        b'media-type="application/oebps-package+xml"/></rootfiles></container>\n',
        "OEBPS/content.opf": (
            b'<?xml version="1.0" encoding="utf-8"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
            b'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            b'<dc:identifier id="id">urn:uuid:1</dc:identifier><dc:title>The Lighthouse Keeper</dc:title>'
            b"<dc:description>A short book about a long night.</dc:description><dc:language>en</dc:language>"
            b"</metadata><manifest>"
            b'<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
            b'<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
            b'<item id="c1" href="text/c1.xhtml" media-type="application/xhtml+xml"/>'
            b'<item id="c2" href="text/c2.xhtml" media-type="application/xhtml+xml"/>'
            b'<item id="map" href="images/map.png" media-type="image/png"/>'
            b'<item id="font" href="fonts/serif.woff2" media-type="font/woff2"/>'
            b'</manifest><spine toc="ncx"><itemref idref="c1"/><itemref idref="c2"/></spine></package>\n'
        ),
        "OEBPS/nav.xhtml": (
            b'<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml" '
            b'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>Contents</title></head><body>'
            b'<nav epub:type="toc"><ol><li><a href="text/c1.xhtml">The Storm</a></li>'
            b'<li><a href="text/c2.xhtml">The Morning</a></li></ol></nav></body></html>\n'
        ),
        "OEBPS/toc.ncx": (
            b'<?xml version="1.0" encoding="utf-8"?>\n'
            b'<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
            b"<docTitle><text>The Lighthouse Keeper</text></docTitle><navMap>"
            b'<navPoint id="p1" playOrder="1"><navLabel><text>The Storm</text></navLabel><content src="text/c1.xhtml"/>'
            b'</navPoint><navPoint id="p2" playOrder="2"><navLabel><text>The Morning</text></navLabel>'
            b'<content src="text/c2.xhtml"/></navPoint></navMap></ncx>\n'
        ),
        "OEBPS/text/c1.xhtml": chapter(
            "The Storm", "The wind <em>howled</em> all night, and the keeper <b>waited</b>."
        ).encode(),
        "OEBPS/text/c2.xhtml": chapter("The Morning", "At dawn the sea was <i>calm</i> again.").encode(),
        "OEBPS/images/map.png": bytes(range(256)) * 4,
        "OEBPS/fonts/serif.woff2": b"wOF2" + bytes(reversed(range(256))) * 3,
    }
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return files


async def test_html_keeps_every_byte_outside_the_text(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "page.html"
    src.write_text(HTML, encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path, "fr"))
    out = (tmp_path / "page.fr.html").read_text(encoding="utf-8")
    doc = load(str(src))
    assert [s.where for s in doc.segments] == ["title", "h1", "p", "img@alt"]
    assert out.count("[sim]") == 4
    for kept in (
        '<script>var x = "do not translate";</script>',
        '<p translate="no">LighthouseCorp™</p>',
        "<pre>keep   this    exactly</pre>",
        "<style>p { margin: 0 }</style>",
        '<html lang="fr">',
    ):
        assert kept in out, kept
    assert "<b>" in out and "</b>" in out and "<i>" in out and "</i>" in out and "&amp;" in out
    # Outside the text (and the root's lang, which is set on purpose), every byte is the source's.
    assert_untouched(HTML.replace('lang="en"', 'lang="fr"'), [(seg.start, seg.end) for seg in doc.segments], out)


async def test_an_epub_translates_its_text_toc_and_metadata_and_keeps_the_rest(
    server: RunningServer, tmp_path: Path
) -> None:
    import zipfile

    src = tmp_path / "keeper.epub"
    files = build_epub(src)
    summaries, review = await translate_files([str(src)], settings(server, tmp_path, "de"))
    assert not review and summaries[0].segments >= 12
    with zipfile.ZipFile(tmp_path / "keeper.de.epub") as z:
        infos = z.infolist()
        assert infos[0].filename == "mimetype" and infos[0].compress_type == zipfile.ZIP_STORED
        assert z.read("mimetype") == b"application/epub+zip"
        assert [i.filename for i in infos] == ["mimetype", *files]
        for name in ("OEBPS/images/map.png", "OEBPS/fonts/serif.woff2", "META-INF/container.xml"):
            assert z.read(name) == files[name], name
        opf = z.read("OEBPS/content.opf").decode()
        assert "<dc:language>de</dc:language>" in opf and "<dc:title>[sim] " in opf
        assert "<dc:description>[sim] " in opf and 'href="text/c1.xhtml"' in opf
        nav = z.read("OEBPS/nav.xhtml").decode()
        assert nav.count("[sim]") == 3 and 'href="text/c1.xhtml"' in nav  # title and both entries
        ncx = z.read("OEBPS/toc.ncx").decode()
        assert ncx.count("<text>[sim] ") == 3
        c1 = z.read("OEBPS/text/c1.xhtml").decode()
        assert "<em>" in c1 and "</em>" in c1 and "<b>" in c1 and "</b>" in c1
        assert 'src="../images/map.png"' in c1 and 'alt="[sim] ' in c1
        assert 'xml:lang="de"' in c1 and c1.count("[sim]") == 4
        # The structure rules a reader relies on: the container names the OPF, every spine item is in the
        # zip and parses as XML, and outside the text each chapter is byte for byte the source.
        import xml.etree.ElementTree as ET

        assert b'full-path="OEBPS/content.opf"' in z.read("META-INF/container.xml")
        for href in ("text/c1.xhtml", "text/c2.xhtml", "nav.xhtml", "toc.ncx"):
            ET.fromstring(z.read(f"OEBPS/{href}"))
        source_c1 = files["OEBPS/text/c1.xhtml"].decode().replace('lang="en"', 'lang="de"')
        spans = [(s, e) for s, e, _ in html_segments(source_c1)]
        assert_untouched(source_c1, spans, c1)


async def test_yaml_values_at_key_paths_keep_comments_and_the_rest(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "strings.yaml"
    src.write_text(
        "# game strings\ntitle: Hello world\nmenu:\n  - label: Start the game   # first\n    id: start\n"
        '  - label: "Quit: now"\n    id: quit\ncount: 3\n',
        encoding="utf-8",
    )
    await translate_files([str(src)], settings(server, tmp_path, "fr", keys=("menu.*.label",)))
    out = (tmp_path / "strings.fr.yaml").read_text(encoding="utf-8")
    import yaml

    data = yaml.safe_load(out)
    assert data["title"] == "Hello world" and data["count"] == 3
    assert [m["id"] for m in data["menu"]] == ["start", "quit"]
    assert all(m["label"].startswith("[sim]") for m in data["menu"])
    assert out.startswith("# game strings\ntitle: Hello world\n") and "   # first\n" in out


async def test_an_edited_source_starts_afresh_and_clashing_outputs_are_refused(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("First paragraph here.\n\nSecond paragraph here.\n", encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path))
    # The second paragraph is rewritten and a new one comes first: nothing may land in the wrong place.
    src.write_text("A new opening.\n\nFirst paragraph here.\n\nSecond paragraph, rewritten.\n", encoding="utf-8")
    summaries, _ = await translate_files([str(src)], settings(server, tmp_path))
    assert not summaries[0].skipped and summaries[0].resumed == 0
    out = (tmp_path / "notes.de.txt").read_text(encoding="utf-8").split("\n\n")
    assert len(out) == 3 and all(p.startswith("[sim]") for p in out)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "index.md").write_text("# Title\n", encoding="utf-8")
    from translane.tools.files._doc import FormatError

    with pytest.raises(FormatError, match="would both be written"):
        await translate_files(
            [str(tmp_path / "a" / "index.md"), str(tmp_path / "b" / "index.md")],
            settings(server, tmp_path, out_dir=str(tmp_path / "out")),
        )


@pytest.mark.parametrize(
    ("html", "texts"),
    [
        ("<ul><li>Apple<li>Banana</ul>", ["Apple", "Banana"]),  # end tags HTML lets one omit
        ("<p>One<p>Two</p>", ["One", "Two"]),
        ("<table><tr><td>a<td>b</table>", ["a", "b"]),
        ("<li>Item text<ul><li>sub</li></ul></li>", ["Item text", "sub"]),  # text beside child blocks
        ("<div>Intro <p>para</p> tail</div>", ["Intro ", "para", " tail"]),
        ("<p>Use <code>x</code> here</p>", ["Use <code>x</code> here"]),  # inline code stays in its line
        ("<body><p>a</p><pre>keep</pre><script>x=1</script>tail text</body>", ["a", "tail text"]),
    ],
)
def test_html_text_is_found_however_the_markup_is_written(html: str, texts: list[str]) -> None:
    assert [html[s:e] for s, e, _ in html_segments(html)] == texts


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def translane_cli(*args: str, prelude: str = "") -> tuple[int, str]:
    """`translane ARGS` in a process of its own, as a user runs it (`prelude`: Python run first); (exit, stderr)."""
    code = f"{prelude}\nimport sys\nfrom translane.cli import main\nsys.exit(main({list(args)!r}))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, err.decode()


async def test_o_names_the_output_file_for_one_input_and_a_folder_otherwise(
    server: RunningServer, tmp_path: Path
) -> None:
    src = tmp_path / "notes.md"
    src.write_text("# Notes\n\nA paragraph to translate.\n", encoding="utf-8")
    target = f"127.0.0.1:{server.port}"
    out = tmp_path / "out.md"
    code, err = await translane_cli("file", "translate", str(src), "--to", "de", "-o", str(out), "--target", target)
    assert code == 0, err
    assert out.is_file() and "[sim" in out.read_text(encoding="utf-8")
    folder = tmp_path / "translated"
    code, err = await translane_cli("file", "translate", str(src), "--to", "fr", "-o", f"{folder}/", "--target", target)
    assert code == 0, err
    assert (folder / "notes.fr.md").is_file()


async def test_without_the_files_extra_it_stops_before_any_call(tmp_path: Path) -> None:
    src = tmp_path / "notes.md"
    src.write_text("A paragraph.\n", encoding="utf-8")
    # lingua made unimportable, as in an install without the extra; no service is even needed.
    code, err = await translane_cli(
        "file",
        "translate",
        str(src),
        "--to",
        "de",
        "--target",
        "127.0.0.1:1",
        prelude="import sys; sys.modules['lingua'] = None",
    )
    assert code == 2 and "pip install 'translane[files]'" in err and "Traceback" not in err
    assert listing(tmp_path) == ["notes.md"]  # no state, no output, no review file


async def test_an_unreachable_service_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "notes.md"
    src.write_text("A paragraph.\n", encoding="utf-8")
    code, err = await translane_cli("file", "translate", str(src), "--to", "de", "--target", "127.0.0.1:1")
    assert code == 1 and "Traceback" not in err
    assert "UNAVAILABLE" in err and "is the service running at 127.0.0.1:1" in err
