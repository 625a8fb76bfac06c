"""translane file: the review file across runs, `apply` checking each fix as a translation is checked, `check`
counting what `translate` counted, and state files gone once a file is translated whole."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from translane.config import load_config
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tools.files._runner import FileSettings, apply_review, check_file, state_path, translate_files

from ..conftest import Sim
from .test_files import build_epub


@pytest.fixture
def sim_config() -> SimConfig:
    """The simulator as users run it: answers in pseudo-words of the target language."""
    return SimConfig.from_config(load_config(env={}))


def settings(server: RunningServer, tmp_path: Path, **kw: object) -> FileSettings:
    return FileSettings(f"127.0.0.1:{server.port}", "de", review=str(tmp_path / "review.json"), **kw)  # type: ignore[arg-type]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


GUIDE = """# Installing the lighthouse service

Install it with `pip install lighthouse`, then read [the getting started guide](https://example.com/start).

The keeper writes every ship that passes into the log before the morning watch begins.

Set `LIGHT_COLOR` and `LIGHT_PERIOD_S` before you start the lamp for the first time tonight.
"""


async def test_a_file_translated_whole_leaves_no_state_behind(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "guide.md"
    src.write_text(GUIDE, encoding="utf-8")
    summaries, review = await translate_files([str(src)], settings(server, tmp_path))
    assert summaries[0].leaks_left == 0 and not review
    assert listing(tmp_path) == ["guide.de.md", "guide.md"]  # no state file, no empty review file
    # Run again: the output is newer than its source, so it is done; touched source, translated again.
    again, _ = await translate_files([str(src)], settings(server, tmp_path))
    assert again[0].skipped and "delete it to translate again" in again[0].text()
    src.write_text(GUIDE.replace("tonight", "this evening"), encoding="utf-8")
    third, _ = await translate_files([str(src)], settings(server, tmp_path))
    assert not third[0].skipped and third[0].segments == 4
    assert listing(tmp_path) == ["guide.de.md", "guide.md"]


async def test_the_review_shows_what_the_model_saw_and_a_rerun_keeps_it(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(untranslated_rate=1.0)
    src = tmp_path / "guide.md"
    src.write_text(GUIDE, encoding="utf-8")
    s = settings(server, tmp_path, repair_attempts=0)
    _, review = await translate_files([str(src)], s)
    assert len(review) == 4
    install = next(e for e in review if e["where"] == "line 3")
    # As sent to the model: inline code and the link's target as placeholders, and what each stands for.
    assert install["original"] == "Install it with {0}, then read [the getting started guide{1}."
    assert install["placeholders"] == {"{0}": "`pip install lighthouse`", "{1}": "](https://example.com/start)"}
    assert install["machine"] == install["original"] and install["translation"] == ""
    # A person starts on the review; then another file is translated, and the first one is skipped (finished,
    # its leaks left for review): nothing of the review is lost.
    review_file = tmp_path / "review.json"
    entries = json.loads(review_file.read_text(encoding="utf-8"))
    entries[0]["translation"] = "Den Leuchtturmdienst installieren"
    review_file.write_text(json.dumps(entries), encoding="utf-8")
    await sim.set(untranslated_rate=0.0)
    other = tmp_path / "notes.txt"
    other.write_text("The lamp must be trimmed every evening before dark.\n", encoding="utf-8")
    summaries, merged = await translate_files([str(src), str(other)], s)
    assert summaries[0].skipped and not summaries[1].skipped
    kept = json.loads(review_file.read_text(encoding="utf-8"))
    assert kept == merged and len(kept) == 4
    assert kept[0]["translation"] == "Den Leuchtturmdienst installieren"
    # A run of the other file alone keeps the first file's entries too.
    await translate_files([str(other)], s)
    assert json.loads(review_file.read_text(encoding="utf-8")) == kept


async def test_apply_checks_each_fix_as_a_translation_and_refuses_with_the_reason(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(untranslated_rate=1.0)
    src = tmp_path / "guide.md"
    src.write_text(GUIDE, encoding="utf-8")
    await translate_files([str(src)], settings(server, tmp_path, repair_attempts=0))
    review_file = tmp_path / "review.json"
    entries = {e["where"]: e for e in json.loads(review_file.read_text(encoding="utf-8"))}
    entries["line 1"]["translation"] = "Den Leuchtturmdienst installieren"  # fine
    # The link and the inline code dropped: refused, naming what went missing.
    entries["line 3"]["translation"] = "Installieren Sie es und lesen Sie die Anleitung zum Einstieg."
    # A placeholder the original does not have, written as text: refused.
    entries["line 5"]["translation"] = "Der Wärter schreibt jedes Schiff {0} vor der Morgenwache ins Logbuch."
    # The markup itself rather than the placeholders: as good as them.
    entries["line 7"]["translation"] = (
        "Setzen Sie `LIGHT_COLOR` und `LIGHT_PERIOD_S`, bevor Sie die Lampe heute Nacht zum ersten Mal anzünden."
    )
    review_file.write_text(json.dumps(list(entries.values())), encoding="utf-8")
    report = apply_review(str(review_file))
    assert report.applied == 2
    refused = {e["where"]: why for e, why in report.refused}
    assert refused.keys() == {"line 3", "line 5"}
    assert "{0} (`pip install lighthouse`), {1} (](https://example.com/start)) missing" in refused["line 3"]
    assert "{0} not in the original" in refused["line 5"]
    out = (tmp_path / "guide.de.md").read_text(encoding="utf-8")
    assert out.startswith("# Den Leuchtturmdienst installieren\n")
    assert "Setzen Sie `LIGHT_COLOR` und `LIGHT_PERIOD_S`, bevor" in out
    # Refused fixes stay in the review with the reason; applied ones leave it; the state stays for them.
    left = json.loads(review_file.read_text(encoding="utf-8"))
    assert [(e["where"], e["refused"]) for e in left] == [("line 3", refused["line 3"]), ("line 5", refused["line 5"])]
    assert state_path(tmp_path / "guide.de.md").exists()
    # Fixed as asked: applied, and with nothing left for review the state goes.
    left[0]["translation"] = "Installieren Sie es mit {0}, dann lesen Sie [die Anleitung zum Einstieg{1}."
    left[1]["translation"] = "Der Wärter trägt jedes vorbeifahrende Schiff vor der Morgenwache ins Logbuch ein."
    review_file.write_text(json.dumps(left), encoding="utf-8")
    assert apply_review(str(review_file)).applied == 2
    out = (tmp_path / "guide.de.md").read_text(encoding="utf-8")
    assert "Installieren Sie es mit `pip install lighthouse`, dann lesen Sie [die Anleitung zum Einstieg]" in out
    assert "(https://example.com/start)." in out
    assert json.loads(review_file.read_text(encoding="utf-8")) == []
    assert not state_path(tmp_path / "guide.de.md").exists()


async def test_apply_refuses_a_fix_still_in_the_source_language(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(untranslated_rate=1.0)
    src = tmp_path / "notes.txt"
    src.write_text(
        "The keeper writes every ship that passes into the log before the morning watch.\n", encoding="utf-8"
    )
    await translate_files([str(src)], settings(server, tmp_path, repair_attempts=0))
    review_file = tmp_path / "review.json"
    entries = json.loads(review_file.read_text(encoding="utf-8"))
    entries[0]["translation"] = "The keeper logs each passing ship before the morning watch starts."
    review_file.write_text(json.dumps(entries), encoding="utf-8")
    report = apply_review(str(review_file))
    assert report.applied == 0 and "in en" in report.refused[0][1]


HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>The keeper's log</title></head><body>
<h1>The keeper's log</h1>
<p>Every evening the keeper climbed the stairs and lit the great lamp above the rocks.</p>
<p>Run <code>lamp --start</code> at <a href="https://example.com/lamp">the lamp's page</a> when it is dark.</p>
<p>Ships passing the headland at night looked for the light long before they saw the shore.</p>
<ul><li>Trim the wick and clean the glass every morning.</li><li><code>lamp --status</code></li></ul>
</body></html>
"""


@pytest.mark.parametrize(("name", "text"), [("guide.md", GUIDE), ("log.html", HTML), ("keeper.epub", "")])
async def test_check_counts_the_segments_and_leaks_translate_reported(
    server: RunningServer, sim: Sim, tmp_path: Path, name: str, text: str
) -> None:
    # About half the answers come back untranslated, and none is repaired: both tools see the same leaks.
    await sim.set(untranslated_rate=0.5)
    src = tmp_path / name
    if text:
        src.write_text(text, encoding="utf-8")
    else:
        build_epub(src)
    summaries, review = await translate_files([str(src)], settings(server, tmp_path, repair_attempts=0))
    output = str(tmp_path / name.replace(".", ".de."))
    # Given the file it was translated from, check judges each segment against its original as translate did.
    report = check_file(output, "de", original=str(src))
    assert report.compared == str(src) and report.segments == summaries[0].segments
    assert [leak.index for leak in report.leaks] == [e["index"] for e in review]
    assert len(report.leaks) == summaries[0].leaks_left > 0
    assert [leak.reason.split(": ", 1)[1] for leak in report.leaks] == [e["reason"] for e in review]
    # Alone, it sees each segment's language: every leak of a whole sentence (the titles of the book are short).
    alone = {leak.index for leak in check_file(output, "de").leaks}
    long = {e["index"] for e in review if len(re.findall(r"[^\W\d_]", e["original"])) >= 12}
    assert long <= alone <= {e["index"] for e in review}


async def test_the_cli_checks_against_the_file_beside_it(server: RunningServer, sim: Sim, tmp_path: Path) -> None:
    await sim.set(untranslated_rate=1.0)
    src = tmp_path / "guide.md"
    src.write_text(GUIDE, encoding="utf-8")
    summaries, _ = await translate_files([str(src)], settings(server, tmp_path, repair_attempts=0))
    code, out = await translane_cli("file", "check", str(tmp_path / "guide.de.md"), "--to", "de")
    assert code == 1
    assert f"guide.de.md: 4 segments, {summaries[0].leaks_left} leak(s) (against {src})" in out


async def translane_cli(*args: str) -> tuple[int, str]:
    """`translane ARGS` in a process of its own, as a user runs it; (exit, stdout)."""
    code = f"import sys\nfrom translane.cli import main\nsys.exit(main({list(args)!r}))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()
