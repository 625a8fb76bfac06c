"""Finding what was left untranslated: a copy of the original, an empty answer, a lost placeholder, or text
still in the source language (offline language identification with lingua)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._protect import placeholders

__all__ = ["Leak", "LeakChecker"]

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
# Below this many letters a language guess is noise (names, units, "OK").
MIN_LETTERS = 12
MIN_CONFIDENCE = 0.6
# Short of that confidence, a text read as another language is still a leak when the target (with its close
# neighbours) is given less than this: text left as it was often reads as no language with confidence once
# its code and links are set aside, but never as the target.
MAX_TARGET_SHARE = 0.3
# ... on a text of at least this many letters: on fewer, the guesses spread too thin to read anything into.
SURE_LETTERS = 24


@dataclass(frozen=True, slots=True)
class Leak:
    """Why a segment's translation is not acceptable."""

    index: int
    reason: str


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# Languages a detector tells apart poorly on a sentence: a translation read as a close neighbour of the target is
# taken as the target (a leak is text left as it was, not Norwegian read as Danish).
_NEIGHBOURS = (
    frozenset({"da", "nb", "nn", "sv"}),
    frozenset({"id", "ms"}),
    frozenset({"hr", "bs", "sr", "sl"}),
    frozenset({"cs", "sk"}),
    frozenset({"es", "pt", "gl", "ca"}),
    frozenset({"ru", "uk", "be", "bg", "mk"}),
)


class LeakChecker:
    """Checks translations into `target`; built once per run (lingua's models load lazily, per language).

    Texts are checked as the model saw them: inline code, link targets, URLs and tags stand as {0}
    placeholders (see _protect.py), so identifiers and addresses kept as they must be are never read as
    a language. `translane file translate` and `file check` judge a text by the same rule (`foreign`).
    """

    def __init__(self, target: str, source: str = "") -> None:
        self.target = target.split("-")[0].lower()
        self.source = source.split("-")[0].lower()
        self._near = next((group for group in _NEIGHBOURS if self.target in group), frozenset({self.target}))
        self._detector: Any = None
        self._languages: dict[str, Any] = {}

    def _lingua(self) -> Any:
        if self._detector is None:
            from lingua import Language, LanguageDetectorBuilder

            known = {}
            for lang in Language.all():
                known[lang.iso_code_639_1.name.lower()] = lang
            self._languages = known
            wanted = {known[c] for c in (self.target, self.source) if c in known}
            # A small set of likely sources beside the target keeps the detector fast and sure.
            for code in ("en", "zh", "ja", "ko", "fr", "de", "es", "ru", "pt", "it"):
                if code in known:
                    wanted.add(known[code])
            self._detector = LanguageDetectorBuilder.from_languages(*wanted).with_preloaded_language_models().build()
        return self._detector

    def language_of(self, text: str) -> tuple[str, float]:
        """(our code, confidence) of the most likely language, or ("", 0) when unsure."""
        if len(_LETTERS.findall(text)) < MIN_LETTERS:
            return "", 0.0
        values = self._lingua().compute_language_confidence_values(text)
        if not values:
            return "", 0.0
        best = values[0]
        return best.language.iso_code_639_1.name.lower(), float(best.value)

    def foreign(self, text: str) -> str | None:
        """Why `text` is not in the target language, or None: read as another language (not a close neighbour of
        the target), either with confidence or with little left for the target. Too short to tell is no leak."""
        letters = len(_LETTERS.findall(text))
        if letters < MIN_LETTERS:
            return None
        values = self._lingua().compute_language_confidence_values(text)
        if not values:
            return None
        language, confidence = values[0].language.iso_code_639_1.name.lower(), float(values[0].value)
        if language in self._near:
            return None
        ours = sum(float(v.value) for v in values if v.language.iso_code_639_1.name.lower() in self._near)
        if confidence < MIN_CONFIDENCE and (ours >= MAX_TARGET_SHARE or letters < SURE_LETTERS):
            return None
        if language == self.source:
            return f"still in the source language ({language}, {confidence:.2f})"
        return f"in {language} ({confidence:.2f}), not {self.target}"

    def check(self, index: int, original: str, translation: str, lost_placeholders: int = 0) -> Leak | None:
        """The leak in one segment's translation, if any: empty, a placeholder lost or made up, a phrase left as
        it was, or not in the target language."""
        if not translation.strip():
            return Leak(index, "empty translation")
        asked, answered = placeholders(original), placeholders(translation)
        lost = max(lost_placeholders, sum(1 for p in asked if p not in answered))
        if lost:
            return Leak(index, f"{lost} placeholder(s) missing")
        made_up = sorted(p for p in answered if p not in asked)
        if made_up:
            return Leak(index, f"placeholder(s) {', '.join(made_up)} not in the original (written as text)")
        if len(_WORD.findall(original)) == 0:
            return None  # numbers, symbols, code: nothing that needed translating
        # A lone word or name may rightly stay as it is; a phrase left as it was is a leak.
        if _norm(translation) == _norm(original) and len(_WORD.findall(original)) >= 2:
            return Leak(index, "identical to the original")
        reason = self.foreign(translation)
        return None if reason is None else Leak(index, reason)
