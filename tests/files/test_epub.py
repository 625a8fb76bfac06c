"""EPUB 2 and EPUB 3 through `translane file`: EPUBCheck finds no error in the translation that it did not find in
the source; the language follows the target wherever the book states it; attributes are translated."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from translane.server import RunningServer
from translane.tools.files._runner import FileSettings, translate_files

from .epubs import epub2, epub3, epubcheck, epubcheck_jar

XHTML = "{http://www.w3.org/1999/xhtml}"


@pytest.mark.parametrize("build", [epub2, epub3], ids=["epub2", "epub3"])
async def test_a_translated_book_passes_epubcheck_as_its_source_did(
    server: RunningServer, tmp_path: Path, build: Callable[[Path], dict[str, bytes]]
) -> None:
    jar = epubcheck_jar()
    src = tmp_path / "keeper.epub"
    build(src)
    settings = FileSettings(f"127.0.0.1:{server.port}", "de", review=str(tmp_path / "review.json"))
    summaries, _ = await translate_files([str(src)], settings)
    before, after = await asyncio.gather(epubcheck(jar, src), epubcheck(jar, tmp_path / "keeper.de.epub"))
    assert before == []  # the fixture is a valid book
    assert [e for e in after if e not in before] == []
    assert summaries[0].segments > 20  # text, attributes, the nav's and the NCX's entries, the metadata


@pytest.mark.parametrize("build", [epub2, epub3], ids=["epub2", "epub3"])
async def test_the_language_follows_the_target_and_attributes_are_translated(
    server: RunningServer, tmp_path: Path, build: Callable[[Path], dict[str, bytes]]
) -> None:
    src = tmp_path / "keeper.epub"
    files = build(src)
    settings = FileSettings(f"127.0.0.1:{server.port}", "de", review=str(tmp_path / "review.json"))
    await translate_files([str(src)], settings)
    with zipfile.ZipFile(tmp_path / "keeper.de.epub") as z:
        opf = z.read("OEBPS/content.opf").decode()
        ncx = z.read("OEBPS/toc.ncx").decode()
        chapters = [z.read(f"OEBPS/text/c{n}.xhtml").decode() for n in (1, 2)]
    assert "<dc:language>de</dc:language>" in opf and "<dc:creator>Ann Example</dc:creator>" in opf
    source_opf = files["OEBPS/content.opf"].decode()
    if 'xml:lang="en"' in source_opf:  # the EPUB 3: the package and its title say their language
        assert re.search(r'<package\b[^>]*\sxml:lang="de"', opf) and '<dc:title xml:lang="de">' in opf
    assert 'xml:lang="en"' not in opf
    # The NCX's language too; its labels translated, the author's name kept.
    assert '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1" xml:lang="de">' in ncx
    assert "<docAuthor><text>Ann Example</text></docAuthor>" in ncx
    assert "<text>The Morning</text>" not in ncx and "<text>The Lighthouse Keeper</text>" not in ncx
    for text in chapters:
        root = ET.fromstring(text)  # well-formed
        assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
        assert root.get("lang") in (None, "de")  # XHTML 1.1 (EPUB 2) has no `lang`: none added
        img, a, abbr = root.find(f".//{XHTML}img"), root.find(f".//{XHTML}a"), root.find(f".//{XHTML}abbr")
        assert img is not None and a is not None and abbr is not None
        assert img.get("src") == "../images/map.png" and img.get("alt") not in (None, 'A map of the "rocky" coast')
        assert a.get("href") in ("c1.xhtml", "c2.xhtml")
        assert a.get("title") not in (None, "The next chapter of the story")
        assert abbr.get("title") not in (None, "Royal National Lifeboat Institution") and abbr.text
