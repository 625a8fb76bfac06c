"""Language codes: the names models are prompted with, and the aliases clients send."""

from __future__ import annotations

__all__ = ["NAMES", "language_name", "normalize_language"]

# The 28 languages of doubao-seed-translation, as the model's docs spell them.
NAMES: dict[str, str] = {
    "zh": "Simplified Chinese",
    "zh-Hant": "Traditional Chinese",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
    "th": "Thai",
    "vi": "Vietnamese",
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "fi": "Finnish",
    "hr": "Croatian",
    "hu": "Hungarian",
    "id": "Indonesian",
    "ms": "Malay",
    "nb": "Norwegian Bokmål",
    "nl": "Dutch",
    "pl": "Polish",
    "ro": "Romanian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    # Beyond the translation model's 28: served by the chat models it falls back to.
    "hi": "Hindi",
    "he": "Hebrew",
    "fa": "Persian",
    "el": "Greek",
    "bg": "Bulgarian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sr": "Serbian",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "et": "Estonian",
    "ca": "Catalan",
    "bn": "Bengali",
    "ur": "Urdu",
    "ta": "Tamil",
    "fil": "Filipino",
    "km": "Khmer",
    "lo": "Lao",
    "my": "Burmese",
    "mn": "Mongolian",
    "kk": "Kazakh",
    "sw": "Swahili",
}

# Region and script variants clients send, folded onto the codes above.
ALIASES: dict[str, str] = {
    "zh-cn": "zh",
    "zh-hans": "zh",
    "zh-sg": "zh",
    "zh-tw": "zh-Hant",
    "zh-hk": "zh-Hant",
    "zh-mo": "zh-Hant",
    "zh-hant": "zh-Hant",
    "no": "nb",
    "nn": "nb",
    "in": "id",
    "iw": "he",
    "tl": "fil",
    "zh-hans-cn": "zh",
    "zh-hant-tw": "zh-Hant",
    "zh-hant-hk": "zh-Hant",
    "auto": "",
}

_CANON = {code.lower(): code for code in NAMES}


def normalize_language(code: str) -> str:
    """Fold a client's language code onto ours: 'zh-CN' → 'zh', 'zh-TW' → 'zh-Hant', 'auto' → ''."""
    c = code.strip().replace("_", "-")
    low = c.lower()
    if low in ALIASES:
        return ALIASES[low]
    if low in _CANON:
        return _CANON[low]
    base = low.split("-", 1)[0]
    if base in _CANON and base != "zh":
        return _CANON[base]  # en-US → en, pt-BR → pt
    return c


def language_name(code: str) -> str:
    """English name of a code for prompts; unknown codes are passed through as they are."""
    return NAMES.get(code, code)
