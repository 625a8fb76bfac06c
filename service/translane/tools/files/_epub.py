"""EPUB 2 and 3: the spine's XHTML in reading order, the nav document, the NCX's title and labels and the OPF's
title and description translated; the language set to the target wherever the book states it (the OPF's
dc:language, the package's and the NCX's xml:lang, each document's root); every other entry copied byte for byte.

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

from ._html import html_spans, set_lang
from ._spans import Span, decode, splice

__all__ = ["EpubBook", "read_epub"]

_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
}
_DC = r"(<dc:{tag}\b[^>]*>)(.*?)(</dc:{tag}>)"
# The book's title and each entry's label; not docAuthor (a name).
_NCX_TEXT = re.compile(r"<(docTitle|navLabel)\b[^>]*>\s*<text\b[^>]*>([^<]*)</text>", re.DOTALL)
# Start tags whose xml:lang follows the target: the package, the NCX, the translated title and description.
_LANG_TAGS = re.compile(r"<(?:package|ncx|dc:title|dc:description)\b[^>]*>")
_XML_LANG = re.compile(r"""(\sxml:lang\s*=\s*)("[^"]*"|'[^']*')""")


@dataclass(slots=True)
class Part:
    """One entry of the book that holds text to translate."""

    name: str
    text: str
    spans: list[Span] = field(default_factory=list)
    html: bool = False


@dataclass(slots=True)
class EpubBook:
    path: str
    infos: list[zipfile.ZipInfo]
    data: dict[str, bytes]
    parts: list[Part]
    opf: str

    def render(self, translations: list[dict[int, str]], target: str) -> bytes:
        """The book with each part's spans replaced; per part a {span index: text} map."""
        texts: dict[str, bytes] = {}
        for part, repl in zip(self.parts, translations, strict=True):
            rendered = splice(part.text, part.spans, repl, "html")
            if part.html:
                rendered = set_lang(rendered, target)
            else:
                rendered = _set_xml_lang(rendered, target)
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


def _set_xml_lang(text: str, lang: str) -> str:
    """The xml:lang of the package, the NCX and the translated metadata set to `lang`, where they have one."""
    return _LANG_TAGS.sub(lambda m: _XML_LANG.sub(lambda a: f'{a.group(1)}"{lang}"', m.group()), text)


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
                text = decode(m.group(2), "xml")
                opf_part.spans.append(Span(m.start(2), m.end(2), f"{opf_name} dc:{tag}", "xml", text))
    opf_part.spans.sort(key=lambda s: s.start)  # the description may come before the title
    parts.append(opf_part)
    for item_id in [*order, *(n for n in nav if n not in order)]:
        item = manifest.get(item_id)
        if item is None or "html" not in item.get("media-type", ""):
            continue
        name = posixpath.normpath(posixpath.join(base, item["href"]))
        text = data[name].decode("utf-8")
        spans = [Span(s.start, s.end, f"{name} {s.where}", s.form, s.text) for s in html_spans(text)]
        parts.append(Part(name, text, spans, html=True))
    for item_id in ncx:
        name = posixpath.normpath(posixpath.join(base, manifest[item_id]["href"]))
        text = data[name].decode("utf-8")
        spans = [
            Span(m.start(2), m.end(2), f"{name} {m.group(1)}", "xml", decode(m.group(2), "xml"))
            for m in _NCX_TEXT.finditer(text)
            if m.group(2).strip()
        ]
        parts.append(Part(name, text, spans))
    return EpubBook(path, infos, data, parts, opf_name)


def is_epub(path: str) -> bool:
    return Path(path).suffix.lower() == ".epub"
