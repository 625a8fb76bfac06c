"""Finding what was left untranslated: a copy of the original, an empty answer, a lost placeholder, or text
still in the source language (offline language identification with lingua)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Leak", "LeakChecker"]

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
# Below this many letters a language guess is noise (names, units, "OK").
MIN_LETTERS = 12
MIN_CONFIDENCE = 0.6


@dataclass(frozen=True, slots=True)
class Leak:
    """Why a segment's translation is not acceptable."""

    index: int
    reason: str


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class LeakChecker:
    """Checks translations into `target`; built once per run (lingua's models load lazily, per language)."""

    def __init__(self, target: str, source: str = "") -> None:
        self.target = target.split("-")[0].lower()
        self.source = source.split("-")[0].lower()
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

    def check(self, index: int, original: str, translation: str, lost_placeholders: int = 0) -> Leak | None:
        """The leak in one segment's translation, if any."""
        if not translation.strip():
            return Leak(index, "empty translation")
        if lost_placeholders:
            return Leak(index, f"{lost_placeholders} placeholder(s) missing")
        if len(_WORD.findall(original)) == 0:
            return None  # numbers, symbols, code: nothing that needed translating
        # A lone word or name may rightly stay as it is; a phrase left as it was is a leak.
        if _norm(translation) == _norm(original) and len(_WORD.findall(original)) >= 2:
            return Leak(index, "identical to the original")
        language, confidence = self.language_of(translation)
        if language and language != self.target and confidence >= MIN_CONFIDENCE:
            source, _ = self.language_of(original)
            if language == (self.source or source):
                return Leak(index, f"still in the source language ({language}, {confidence:.2f})")
        return None
