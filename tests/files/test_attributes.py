"""Text inside markup: `alt`, `title` and `aria-label` in HTML (inside a paragraph too), Markdown images' alt and
links' titles; each its own segment, written back escaped; a nav's entries translated inside their links."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from markdown_it import MarkdownIt
from translane.tools.files._doc import Doc, load, parse
from translane.tools.files._html import html_spans, set_lang
from translane.tools.files._protect import protect, restore

from .epubs import epub3


def model(doc: Doc, text: str) -> str:
    """What a careful model does: every word changed (here reversed), placeholders and entities kept."""
    kind = "html" if doc.kind in ("html", "epub") else doc.kind
    masked, runs = protect(text, kind)
    out, lost = restore(re.sub(r"(?<![&#\w])[A-Za-z]+", lambda m: m.group()[::-1], masked), runs)
    assert not lost
    return out


PARAGRAPH = (
    '<html lang="en"><body>\n<p class="x">See <img src="map.png" alt="A map of the &quot;coast&quot;"/> and '
    "<a href=\"/next\" title='The next page'>go on</a>, asks the "
    '<abbr title="World Health Organization">WHO</abbr> <span aria-label="Close the window">x</span>.</p>\n'
    '<p><img src="a.png" alt="logo.png"/><img src="b.png" alt="Only a picture" title="42"/></p>\n'
    '<link rel="alternate stylesheet" title="Dark" href="d.css"/>\n</body></html>\n'
)


def test_attributes_inside_a_paragraph_are_segments_of_their_own() -> None:
    doc = parse(PARAGRAPH, "html")
    assert [(s.where, s.text) for s in doc.segments] == [
        ("p", PARAGRAPH[PARAGRAPH.index("See") : PARAGRAPH.index(".</p>") + 1]),
        ("img@alt", 'A map of the "coast"'),  # decoded: the model reads text, not entities
        ("a@title", "The next page"),
        ("abbr@title", "World Health Organization"),
        ("span@aria-label", "Close the window"),
        ("img@alt", "Only a picture"),  # not a file name, a number, nor a style sheet's name
    ]
    # The paragraph goes with its tags as placeholders: the attributes are not sent twice.
    masked, _ = protect(doc.segments[0].text, "html")
    assert masked == "See {0} and {1}go on{2}, asks the {3}WHO{4} {5}x{6}."


def test_translated_attributes_are_written_back_escaped_in_their_quotes() -> None:
    doc = parse(PARAGRAPH, "html")
    translations = {s.index: model(doc, s.text) for s in doc.segments}
    translations[1] = 'Une carte de la "côte" & <des> îles'
    translations[2] = "La page d'après"
    out = doc.render(translations)
    root = ET.fromstring(out)
    img, a = root.find(".//img"), root.find(".//a")
    assert img is not None and a is not None
    assert img.get("alt") == 'Une carte de la "côte" & <des> îles' and img.get("src") == "map.png"
    assert a.get("title") == "La page d'après" and a.get("href") == "/next" and "title='La page d&#39;après'" in out
    assert root.find(".//abbr").get("title") == "dlroW htlaeH noitazinagrO"  # type: ignore[union-attr]
    assert root.find(".//span").get("aria-label") == "esolC eht wodniw"  # type: ignore[union-attr]
    assert "ees" not in out and "eeS" in out and ">og no</a>" in out  # the paragraph itself, translated
    assert 'alt="logo.png"' in out and 'title="Dark"' in out and 'title="42"' in out
    # Translated to itself, the file is the same bytes.
    assert doc.render({s.index: s.text for s in doc.segments}) == PARAGRAPH


def test_the_model_s_bare_ampersand_and_angle_bracket_are_escaped_in_text() -> None:
    doc = parse("<html><body><p>Salt &amp; pepper</p></body></html>", "html")
    out = doc.render({0: "Sel & poivre < 3 &amp; plus"})
    assert out == "<html><body><p>Sel &amp; poivre &lt; 3 &amp; plus</p></body></html>"


MARKDOWN = (
    '# A guide\n\nSee ![A map of the [old] coast](img/map.png "The coast, from the north") and read '
    "[the docs](https://example.com/docs 'The \"full\" docs') or [this](<a b.md> (Short)).\n\n"
    '![Only a picture](pic.png)\n\nKeep `![code](x.png "no")` as it is. ![shot_01.png](s.png "42")\n'
)


def test_markdown_alt_text_and_titles_are_segments_of_their_own() -> None:
    doc = parse(MARKDOWN, "markdown")
    assert [(s.where, s.text) for s in doc.segments] == [
        ("line 1", "A guide"),
        ("line 3", MARKDOWN.split("\n")[2]),
        ("line 3 image alt", "A map of the [old] coast"),
        ("line 3 title", "The coast, from the north"),
        ("line 3 title", 'The "full" docs'),
        ("line 3 title", "Short"),
        ("line 5 image alt", "Only a picture"),  # the paragraph itself says nothing else
        ("line 7", 'Keep `![code](x.png "no")` as it is. ![shot_01.png](s.png "42")'),  # a file name, a number
    ]
    masked, _ = protect(doc.segments[1].text, "markdown")
    assert masked == "See {0} and read [the docs{1} or [this{2}."


def test_markdown_alt_text_and_titles_come_back_escaped() -> None:
    doc = parse(MARKDOWN, "markdown")
    translations = {s.index: model(doc, s.text) for s in doc.segments}
    translations[2] = "Une carte de la [vieille] côte \\o/"
    translations[3] = 'La côte, "vue" du nord'
    translations[4] = "La doc « complète » d'abord"
    translations[5] = "Court (bref)"
    out = doc.render(translations)
    tokens = [t for t in MarkdownIt("commonmark").parse(out) if t.type == "inline"]
    children = [c for t in tokens for c in t.children or []]
    images = [c for c in children if c.type == "image"]
    links = [c for c in children if c.type == "link_open"]
    # The alt as a reader gets it: the image's text, its escapes undone.
    alts = ["".join(c.content for c in i.children or []) for i in images]
    assert [(alt, i.attrGet("src"), i.attrGet("title")) for alt, i in zip(alts, images, strict=True)] == [
        ("Une carte de la [vieille] côte \\o/", "img/map.png", 'La côte, "vue" du nord'),
        ("ylnO a erutcip", "pic.png", None),
        ("shot_01.png", "s.png", "42"),
    ]
    assert [(a.attrGet("href"), a.attrGet("title")) for a in links] == [
        ("https://example.com/docs", "La doc « complète » d'abord"),
        ("a%20b.md", "Court (bref)"),
    ]
    assert "[eht scod](" in out and '`![code](x.png "no")`' in out
    assert doc.render({s.index: s.text for s in doc.segments}) == MARKDOWN


def test_a_nav_entry_is_translated_inside_its_link(tmp_path: Path) -> None:
    book = tmp_path / "book.epub"
    files = epub3(book)
    nav = files["OEBPS/nav.xhtml"].decode()
    entries = [s for s in html_spans(nav) if s.where == "a"]
    assert [s.text for s in entries] == [
        "The Storm &amp; the Night",
        "<span>The</span> Morning",  # a span inside a link is inline
        "A calm sea",
        "Start of the story",
    ]
    for s in entries:
        assert re.search(r"<a\b[^>]*>$", nav[: s.start]) and nav[s.end :].startswith("</a>"), s
    # Whatever the model adds around an entry stays inside its link.
    doc = load(str(book))
    out = doc.output({s.index: f"Vorwort: {s.text}" for s in doc.segments if s.where.endswith(" a")})
    rendered = zipfile.ZipFile(io.BytesIO(out)).read("OEBPS/nav.xhtml").decode()
    for li in ET.fromstring(rendered).iter("{http://www.w3.org/1999/xhtml}li"):
        assert not (li.text or "").strip() and all(not (child.tail or "").strip() for child in li)


def test_the_root_language_is_added_as_xhtml_allows_it() -> None:
    xhtml = '<html xmlns="http://www.w3.org/1999/xhtml"><head/></html>'
    assert set_lang(xhtml, "de") == '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="de"><head/></html>'
    assert set_lang("<html><head></head></html>", "de") == '<html lang="de"><head></head></html>'
    both = '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">'
    assert set_lang(both, "fr") == '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="fr" lang="fr">'


def test_a_greater_than_sign_inside_an_attribute_value_ends_no_tag() -> None:
    """`alt="one -> two"`: the tag is one placeholder, the alt one segment, and the output stays well-formed."""
    page = (
        '<html lang="en"><body><p>See <img src="f.png" alt="Step one -> step two"/> and '
        '<a href="x.html" title="Go here -> then there">this link</a>.</p></body></html>\n'
    )
    doc = parse(page, "html")
    masked, runs = protect(doc.segments[0].text, "html")
    assert masked == "See {0} and {1}this link{2}."
    assert runs[0] == '<img src="f.png" alt="Step one -> step two"/>'
    assert [(s.where, s.text) for s in doc.segments[1:]] == [
        ("img@alt", "Step one -> step two"),
        ("a@title", "Go here -> then there"),
    ]
    root = ET.fromstring(doc.render({s.index: model(doc, s.text) for s in doc.segments}))
    body = root.find("body")
    assert body is not None and not (body.text or "").strip()  # no stray text outside the paragraph
    img, a = root.find(".//img"), root.find(".//a")
    assert img is not None and img.get("alt") == "petS eno -> pets owt"
    assert a is not None and a.get("title") == "oG ereh -> neht ereht" and a.text == "siht knil"
