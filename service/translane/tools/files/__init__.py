"""`translane file`: translate files, keep their structure byte-exact, find and repair untranslated leaks.

A client of the service: a file's human text is cut into segments (paragraphs, headings,
cues, selected values), sent through the service at batch priority, checked for leaks,
and put back in place; everything outside the translated text is kept byte for byte.
"""

from __future__ import annotations

from ._cli import add_parser
from ._doc import Doc, Segment, load
from ._leaks import Leak, LeakChecker
from ._runner import ApplyReport, CheckReport, FileSettings, FileSummary, apply_review, check_file, translate_files

__all__ = [
    "ApplyReport",
    "CheckReport",
    "Doc",
    "FileSettings",
    "FileSummary",
    "Leak",
    "LeakChecker",
    "Segment",
    "add_parser",
    "apply_review",
    "check_file",
    "load",
    "translate_files",
]
