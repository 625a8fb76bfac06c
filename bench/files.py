"""A whole book at the slow model's limits: a generated 1,000-paragraph EPUB through `translane file translate`.

Starts the simulated provider (sliding window, the slow model's RPM 5,000 / TPM 500,000, ~0.35 s
a call, answering in pseudo-target words) and `translane serve` as processes on loopback; this
process runs the file translator on a generated EPUB 3 of N paragraphs in 10 chapters (plus
titles and the table of contents). It prints the wall time against the least time the RPM
allows for the segments sent, the provider's 429s and the leak check's findings.

    python bench/files.py [--paragraphs 1000] [--window-s 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SLOW_RPM as RPM
from _common import SLOW_TPM as TPM
from _common import free_port, machine, process, sim_stats, slow_models
from translane.tools.files import FileSettings, translate_files

WORDS = "the keeper watched the sea while the storm rolled over the rocks and the light turned slowly".split()


def book(path: Path, paragraphs: int, chapters: int = 10) -> None:
    per = paragraphs // chapters
    manifest, spine, nav, chapters_xhtml = [], [], [], {}
    for c in range(chapters):
        body = "".join(
            f"<p>{' '.join(WORDS[(c + i + k) % len(WORDS)] for k in range(12)).capitalize()} ({c}.{i}).</p>"
            for i in range(per)
        )
        chapters_xhtml[f"OEBPS/c{c}.xhtml"] = (
            f'<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head>'
            f"<title>Chapter {c}</title></head><body><h1>Chapter {c} of the night</h1>{body}</body></html>\n"
        )
        manifest.append(f'<item id="c{c}" href="c{c}.xhtml" media-type="application/xhtml+xml"/>')
        spine.append(f'<itemref idref="c{c}"/>')
        nav.append(f'<li><a href="c{c}.xhtml">Chapter {c} of the night</a></li>')
    opf = (
        '<?xml version="1.0" encoding="utf-8"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
        'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:identifier id="id">b</dc:identifier>'
        "<dc:title>The Long Night</dc:title><dc:language>en</dc:language></metadata><manifest>"
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        + "".join(manifest)
        + "</manifest><spine>"
        + "".join(spine)
        + "</spine></package>\n"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        z.writestr("OEBPS/content.opf", opf)
        z.writestr(
            "OEBPS/nav.xhtml",
            '<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Contents'
            f"</title></head><body><nav><ol>{''.join(nav)}</ol></nav></body></html>\n",
        )
        for name, text in chapters_xhtml.items():
            z.writestr(name, text, compress_type=zipfile.ZIP_DEFLATED)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paragraphs", type=int, default=1000)
    p.add_argument("--window-s", type=float, default=60.0)
    args = p.parse_args()
    print(f"bench/files.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}: {args.paragraphs}-paragraph EPUB")
    scale = args.window_s / 60
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        models = tmp / "models.toml"
        models.write_text(slow_models(args.window_s, round(RPM * scale), round(TPM * scale)))
        src = tmp / "night.epub"
        book(src, args.paragraphs)
        sim_port, grpc_port = free_port(), free_port()
        common = ["--models-file", str(models)]
        sim = [*common, "sim", "--port", str(sim_port), "--window-s", str(args.window_s), "--ttft-s", "0.3"]
        serve = [*common, "serve", "--port", str(grpc_port), "--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
        with process(sim, sim_port), process(serve, grpc_port):
            urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{sim_port}/_sim/config",
                    data=b'{"pseudo_translate": 1}',
                    headers={"Content-Type": "application/json"},
                ),
                timeout=5,
            ).read()
            settings = FileSettings(f"127.0.0.1:{grpc_port}", "de", review=str(tmp / "review.json"), max_in_flight=64)
            started = time.perf_counter()
            summaries, review = uvloop.run(translate_files([str(src)], settings))
            wall = time.perf_counter() - started
            stats = sim_stats(sim_port)
    s = summaries[0]
    floor = stats["admitted"] / (RPM / 60)
    print(f"  {s.text()}")
    print(
        f"  provider calls {stats['admitted']:.0f}, 429s {stats['rate_limited']:.0f}; wall {wall:.1f}s against "
        f"{floor:.1f}s the RPM allows = {wall / floor:.3f}x (target <= 1.1x); {len(review)} left for review"
    )


if __name__ == "__main__":
    main()
