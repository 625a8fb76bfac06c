"""EPUB 2 and 3: the spine's XHTML in reading order, the nav document, the NCX labels and the OPF's title and
description translated; the OPF's dc:language set to the target; every other entry copied byte for byte.

The zip is rebuilt entry by entry in the original order with each entry's own ZipInfo (name,
date, compression): `mimetype` stays first and stored, images, fonts and CSS are the same bytes.
"""

from __future__ import annotations

import io
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ._html import html_segments, set_lang

__all__ = ["EpubBook", "read_epub"]

_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
}
_DC = r"(<dc:{tag}\b[^>]*>)(.*?)(</dc:{tag}>)"
_NCX_TEXT = re.compile(r"<text>(.*?)</text>", re.DOTALL)


@dataclass(slots=True)
class Part:
    """One entry of the book that holds text to translate."""

    name: str
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    html: bool = False


@dataclass(slots=True)
class EpubBook:
    path: str
    infos: list[zipfile.ZipInfo]
    data: dict[str, bytes]
    parts: list[Part]
    opf: str

    def render(self, translations: list[dict[tuple[int, int], str]], target: str) -> bytes:
        """The book with each part's spans replaced; per part a {(start, end): text} map."""
        texts: dict[str, bytes] = {}
        for part, repl in zip(self.parts, translations, strict=True):
            out, pos = [], 0
            for start, end, _ in part.spans:
                out.append(part.text[pos:start])
                out.append(repl.get((start, end), part.text[start:end]))
                pos = end
            out.append(part.text[pos:])
            rendered = "".join(out)
            if part.html:
                rendered = set_lang(rendered, target)
            if part.name == self.opf:
                rendered = re.sub(
                    _DC.format(tag="language"),
                    lambda m: f"{m.group(1)}{target}{m.group(3)}",
                    rendered,
                    count=1,
                    flags=re.DOTALL,
                )
            texts[part.name] = rendered.encode("utf-8")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as out_zip:
            for info in self.infos:
                out_zip.writestr(info, texts.get(info.filename, self.data[info.filename]))
        return buffer.getvalue()


def read_epub(path: str) -> EpubBook:
    """The book's entries and the parts that hold text, in reading order."""
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        data = {i.filename: z.read(i.filename) for i in infos}
    container = ET.fromstring(data["META-INF/container.xml"])
    rootfile = container.find(".//c:rootfile", _NS)
    if rootfile is None:
        raise ValueError(f"{path}: META-INF/container.xml names no rootfile")
    opf_name = rootfile.attrib["full-path"]
    base = posixpath.dirname(opf_name)
    opf_text = data[opf_name].decode("utf-8")
    opf = ET.fromstring(opf_text)
    manifest = {
        item.attrib["id"]: item.attrib for item in opf.iterfind(".//opf:manifest/opf:item", _NS) if "id" in item.attrib
    }
    order = [ref.attrib["idref"] for ref in opf.iterfind(".//opf:spine/opf:itemref", _NS)]
    nav = [i for i, m in manifest.items() if "nav" in m.get("properties", "").split()]
    ncx = [i for i, m in manifest.items() if m.get("media-type") == "application/x-dtbncx+xml"]
    parts: list[Part] = []
    opf_part = Part(opf_name, opf_text)
    for tag in ("title", "description"):
        for m in re.finditer(_DC.format(tag=tag), opf_text, re.DOTALL):
            if m.group(2).strip():
                opf_part.spans.append((m.start(2), m.end(2), f"{opf_name} dc:{tag}"))
    opf_part.spans.sort()  # the description may come before the title
    parts.append(opf_part)
    for item_id in [*order, *(n for n in nav if n not in order)]:
        item = manifest.get(item_id)
        if item is None or "html" not in item.get("media-type", ""):
            continue
        name = posixpath.normpath(posixpath.join(base, item["href"]))
        text = data[name].decode("utf-8")
        parts.append(Part(name, text, [(s, e, f"{name} {w}") for s, e, w in html_segments(text)], html=True))
    for item_id in ncx:
        name = posixpath.normpath(posixpath.join(base, manifest[item_id]["href"]))
        text = data[name].decode("utf-8")
        spans = [(m.start(1), m.end(1), f"{name} navLabel") for m in _NCX_TEXT.finditer(text) if m.group(1).strip()]
        parts.append(Part(name, text, spans))
    return EpubBook(path, infos, data, parts, opf_name)


def is_epub(path: str) -> bool:
    return Path(path).suffix.lower() == ".epub"
