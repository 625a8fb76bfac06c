"""bilingual_book_maker, unmodified, against the shim with its default configuration: every paragraph of the
book comes back translated alone (no instruction text in any paragraph) into the language asked for.

The client is installed from the package registry into a venv kept under .cache/ (one install, ~30 s); when it
cannot be installed (no registry), the test is skipped saying so.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest
from translane.wire import resolve

from gateway_shim import RunningShim, ShimConfig

from ..conftest import Sim

BBOOK = "bbook-maker==1.3.1"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "bbook-1.3.1"
PARAGRAPHS = [
    "The wind howled all night, and the keeper waited.",
    "At dawn the sea was calm again, and the gulls came back.",
    "She climbed the stairs to trim the wick one more time.",
    "Somewhere beyond the reef a bell was ringing.",
]
# What the client puts around each paragraph (its DEFAULT_PROMPT): none of it may reach the book.
INSTRUCTION_WORDS = ("Please help me", "please return only", "origin text")


def _bbook() -> Path:
    exe = CACHE / "bin" / "bbook_maker"
    if exe.exists():
        return exe
    venv.create(CACHE, with_pip=True)
    done = subprocess.run(
        [str(CACHE / "bin" / "pip"), "install", "-q", BBOOK], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or not exe.exists():
        pytest.skip(f"{BBOOK} could not be installed: {done.stderr.strip()[-300:]}")
    return exe


def _chapter(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml" '
        f'xml:lang="en" lang="en"><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>\n'
    ).encode()


def _book(path: Path) -> None:
    opf = (
        '<?xml version="1.0" encoding="utf-8"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
        'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:identifier id="id">urn:uuid:7</dc:identifier><dc:title>The Keeper</dc:title>'
        "<dc:language>en</dc:language></metadata><manifest>"
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        '<item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="c2" href="c2.xhtml" media-type="application/xhtml+xml"/>'
        '</manifest><spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>\n'
    )
    nav = (
        '<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>Contents</title></head><body>'
        '<nav epub:type="toc"><ol><li><a href="c1.xhtml">Night</a></li><li><a href="c2.xhtml">Dawn</a></li>'
        "</ol></nav></body></html>\n"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?>\n<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>\n",
        )
        z.writestr("OEBPS/content.opf", opf)
        z.writestr("OEBPS/nav.xhtml", nav)
        z.writestr("OEBPS/c1.xhtml", _chapter("Night", PARAGRAPHS[:2]))
        z.writestr("OEBPS/c2.xhtml", _chapter("Dawn", PARAGRAPHS[2:]))


@pytest.fixture
def shim_config() -> ShimConfig:
    return ShimConfig(port=0)  # the defaults: no default target, no passthrough model


@pytest.mark.parametrize("language", ["ja", "zh-hans", "de"])
async def test_bilingual_book_maker_translates_each_paragraph_alone_into_the_language_asked(
    shim: RunningShim, sim: Sim, tmp_path: Path, language: str
) -> None:
    exe = await asyncio.to_thread(_bbook)
    book = tmp_path / "keeper.epub"
    _book(book)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "NO_COLOR": "1"}
    env.pop("PYTHONPATH", None)
    process = await asyncio.create_subprocess_exec(
        str(exe),
        "--book_name",
        str(book),
        "--api_base",
        f"{shim.url}/v1",
        "--openai_key",
        "sk-unused",
        "--model",
        "openai",
        "--model_list",
        "doubao-seed-translation-250915",
        "--language",
        language,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    log = output.decode(errors="replace")
    assert process.returncode == 0, log[-2000:]
    out = tmp_path / "keeper_bilingual.epub"
    assert out.exists(), log[-2000:]
    with zipfile.ZipFile(out) as z:
        pages = "".join(z.read(n).decode() for n in z.namelist() if n.endswith(".xhtml") or n.endswith(".html"))
    # The sim answers "[sim SOURCE->TARGET] TEXT": TARGET is the language the shim read, TEXT what it sent.
    answers = re.findall(r"<p>\[sim ([^\]]+?)-&gt;([^\]]+?)\] (.*?)</p>", pages)
    assert sorted(text for _, _, text in answers) == sorted(PARAGRAPHS), pages[-3000:]
    expected = resolve(language.replace("zh-hans", "zh"))
    assert {resolve(target) for _, target, _ in answers} == {expected}
    assert not any(word in pages for word in INSTRUCTION_WORDS)
    # The client's probes (a connection check, a JSON-schema probe) were refused, and it went on regardless.
    assert (await sim.stats())["models"]["doubao-seed-translation-250915"]["admitted"] >= len(PARAGRAPHS)
