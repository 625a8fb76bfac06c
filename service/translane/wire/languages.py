"""Languages named by clients: codes and names in English, Chinese and the language itself, in fields and prompts.

Prompts are searched for a language name right after a target marker ("to", "into",
"翻译成", "target language:") or a source marker ("from", "从", "source language:").
Latin-script names and codes must stand as whole words; CJK names need no spaces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..languages import ALIASES, NAMES, normalize_language

__all__ = ["plugin_code", "prompt_languages", "resolve", "template_target"]

# Names besides NAMES' English ones: other English spellings, Chinese (both scripts) and native names.
_EXTRA_NAMES: dict[str, tuple[str, ...]] = {
    "zh": (
        "Chinese",
        "Chinese (Simplified)",
        "Chinese Simplified",
        "Simplified",
        "Mandarin",
        "Mandarin Chinese",
        "简体中文",
        "簡體中文",
        "中文",
        "中文（简体）",
        "中文(简体)",
        "简体",
        "简中",
        "汉语",
        "漢語",
        "普通话",
        "简体中文白话文",
        "华语",
        "國語",
    ),
    "zh-Hant": (
        "Chinese (Traditional)",
        "Chinese Traditional",
        "Traditional",
        "繁体中文",
        "繁體中文",
        "中文（繁體）",
        "中文(繁體)",
        "中文（繁体）",
        "中文(繁体)",
        "繁体",
        "繁體",
        "繁体中文白话文",
        "繁中",
        "正體中文",
        "正体中文",
        "台湾地区繁體中文",
        "台灣地區繁體中文",
        "台湾地区繁体中文",
        "台湾繁體中文",
        "台灣繁體中文",
    ),
    "en": ("英语", "英語", "英文", "American English", "British English", "English (US)", "English (UK)"),
    "ja": ("日语", "日語", "日文", "日本语", "日本語", "にほんご"),
    "ko": ("韩语", "韓語", "韩文", "韓文", "朝鲜语", "한국어", "한국말"),
    "de": ("德语", "德語", "德文", "Deutsch", "Deutsche"),
    "fr": ("法语", "法語", "法文", "Français", "Francais"),
    "es": ("西班牙语", "西班牙語", "西班牙文", "Español", "Espanol", "Castellano"),
    "it": ("意大利语", "意大利語", "義大利語", "意大利文", "Italiano"),
    "pt": (
        "葡萄牙语",
        "葡萄牙語",
        "葡萄牙文",
        "Português",
        "Portugues",
        "Brazilian Portuguese",
        "Portuguese (Brazil)",
        "Portuguese (Portugal)",
        "Brazilian-Portuguese",
    ),
    "ru": ("俄语", "俄語", "俄文", "Русский", "Русский язык"),
    "th": ("泰语", "泰語", "泰文", "ภาษาไทย", "ไทย"),
    "vi": ("越南语", "越南語", "越南文", "Tiếng Việt", "Tieng Viet"),
    "ar": ("阿拉伯语", "阿拉伯語", "阿拉伯文", "العربية"),
    "cs": ("捷克语", "捷克語", "Čeština", "Cestina"),
    "da": ("丹麦语", "丹麥語", "Dansk"),
    "fi": ("芬兰语", "芬蘭語", "Suomi"),
    "hr": ("克罗地亚语", "克羅地亞語", "Hrvatski"),
    "hu": ("匈牙利语", "匈牙利語", "Magyar"),
    "id": ("印尼语", "印尼語", "印度尼西亚语", "印度尼西亞語", "Bahasa Indonesia"),
    "ms": ("马来语", "馬來語", "Bahasa Melayu", "Melayu"),
    "nb": ("挪威语", "挪威語", "Norwegian", "Norwegian Bokmal", "Bokmål", "Norsk", "Norsk bokmål", "Norwegian Nynorsk"),
    "nl": ("荷兰语", "荷蘭語", "Nederlands", "Flemish"),
    "pl": ("波兰语", "波蘭語", "Polski"),
    "ro": ("罗马尼亚语", "羅馬尼亞語", "Română", "Romana"),
    "sv": ("瑞典语", "瑞典語", "Svenska"),
    "tr": ("土耳其语", "土耳其語", "Türkçe", "Turkce"),
    "uk": ("乌克兰语", "烏克蘭語", "Українська"),
    "hi": ("印地语", "印地語", "हिन्दी"),
    "he": ("希伯来语", "希伯來語", "עברית"),
    "fa": ("波斯语", "波斯語", "Farsi", "فارسی"),
    "el": ("希腊语", "希臘語", "Ελληνικά"),
    "bg": ("保加利亚语", "保加利亞語", "Български"),
    "sk": ("斯洛伐克语", "斯洛伐克語", "Slovenčina"),
    "sl": ("斯洛文尼亚语", "斯洛維尼亞語", "Slovene", "Slovenščina"),
    "sr": ("塞尔维亚语", "塞爾維亞語", "Српски"),
    "lt": ("立陶宛语", "立陶宛語", "Lietuvių"),
    "lv": ("拉脱维亚语", "拉脫維亞語", "Latviešu"),
    "et": ("爱沙尼亚语", "愛沙尼亞語", "Eesti"),
    "ca": ("加泰罗尼亚语", "加泰羅尼亞語", "Català"),
    "bn": ("孟加拉语", "孟加拉語", "Bangla", "বাংলা"),
    "ur": ("乌尔都语", "烏爾都語", "اردو"),
    "ta": ("泰米尔语", "泰米爾語", "தமிழ்"),
    "fil": ("菲律宾语", "菲律賓語", "Tagalog"),
    "km": ("高棉语", "高棉語", "Cambodian", "ភាសាខ្មែរ"),
    "lo": ("老挝语", "寮國語", "Laotian", "ພາສາລາວ"),
    "my": ("缅甸语", "緬甸語", "Myanmar"),
    "mn": ("蒙古语", "蒙古語", "Монгол"),
    "kk": ("哈萨克语", "哈薩克語", "Қазақ"),
    "sw": ("斯瓦希里语", "斯瓦希里語", "Kiswahili"),
}

# Codes that are also everyday English words, or a country ("to UK English"): never read as codes in prompts.
_AMBIGUOUS_CODES = frozenset({"it", "id", "in", "no", "my", "he", "hi", "ms", "uk", "lo", "et", "ca", "fa", "sw", "tl"})
# A single word like "Simplified" or "Traditional" only names a language in a field, not in free prose.
_FIELD_ONLY = frozenset({"simplified", "traditional"})

_LATIN = "A-Za-z\u00c0-\u024f"


def _fold(name: str) -> str:
    return " ".join(name.replace("（", "(").replace("）", ")").split()).casefold()


def _build() -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(every folded name or code → code, the subset read in prompts, their spellings for the regex)."""
    names: dict[str, str] = {}
    spellings: list[str] = []
    for code, english in NAMES.items():
        names[_fold(english)] = code
        spellings.append(english)
    for code, extra in _EXTRA_NAMES.items():
        for name in extra:
            names.setdefault(_fold(name), code)
            spellings.append(name)
    in_prompts = {n: c for n, c in names.items() if n not in _FIELD_ONLY}
    spellings = [s for s in spellings if _fold(s) in in_prompts]
    codes = [*((c.lower(), c) for c in NAMES), *((a, c) for a, c in ALIASES.items() if c)]
    for raw, code in codes:
        if raw in _AMBIGUOUS_CODES:
            continue
        for spelled in {raw, raw.replace("-", "_")}:
            if spelled not in in_prompts:
                in_prompts[spelled] = code
                spellings.append(spelled)
    return names, in_prompts, spellings


_BY_NAME, _IN_PROMPTS, _SPELLINGS = _build()


def _alternation(spellings: Iterable[str]) -> str:
    parts = []
    for name in sorted(set(spellings), key=len, reverse=True):  # longest first: "简体中文" before "中文"
        text = re.escape(name).replace(r"\ ", r"\s+")
        if re.match(f"[{_LATIN}]", name):
            # Whole words only for Latin script; CJK names sit right after their marker.
            text = f"(?<![{_LATIN}]){text}(?![{_LATIN}\\-_])"
        parts.append(text)
    return "|".join(parts)


_NAME_AT = re.compile(_alternation(_SPELLINGS), re.IGNORECASE)
# A BCP 47-ish code: language, then optional script and region subtags.
_CODE_AT = re.compile(r"(?P<code>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,2})(?![\w-])")
# What may follow the language where it ends an instruction: an aside in brackets, then ":" or the line's end.
_ENDS_INSTRUCTION = re.compile(r"[ \t]*(?:\([^)\n]{0,80}\)[ \t]*)?(?:[:：]|\n|\Z)")
_LENGTHS = sorted({len(s) for s in _SPELLINGS}, reverse=True)
_LATIN_CHAR = re.compile(f"[{_LATIN}]")


@dataclass(frozen=True, slots=True)
class _Rule:
    """A marker, and which side of it the language name stands ("after" or "before")."""

    marker: re.Pattern[str]
    side: str
    # For "after" rules: what must follow the name for the rule to hold.
    then: re.Pattern[str] | None = None


def _rules(side: str, *patterns: str, then: str | None = None) -> tuple[_Rule, ...]:
    after = re.compile(then) if then else None
    return tuple(_Rule(re.compile(p, re.IGNORECASE), side, after) for p in patterns)


_GAP = r"[ \t]*"
# Markers in order of trust. Each is searched as a plain regex; only where one matches is the
# name table consulted, so a long prompt costs a few literal scans, not a name search per character.
_TARGET_RULES = (
    *_rules(
        "after",
        r"\btarget[ _]lang(?:uage)?(?:\s+is)?\s*[:：=]?\s*",
        r"(?:目标语言|目標語言|目标语种|目標語種)\s*[:：为為是]?\s*",
        r"(?:翻译|翻譯|译|譯|转换|轉換|转写|轉寫|翻)\s*(?:成|为|為|到|至)\s*",
        r"\b(?:into|to)\s+(?:the\s+)?",
        r"(?:->|→|=>)\s*",
    ),
    *_rules("before", rf"{_GAP}(?:に|へ){_GAP}(?:翻訳|訳)", rf"{_GAP}(?:으로|로){_GAP}번역"),
    *_rules("after", rf"(?:用|以){_GAP}", then=rf"{_GAP}(?:回答|回复|回覆|输出|輸出|写|寫)"),
    # The order in the target's own words, as the plugin's own prompts for these targets write it:
    # "Переведите на русский язык", "Traduisez en français", "Traduce al español", "Traduza para português",
    # "Übersetze ins Deutsche". A name only (no code), and only after a verb of translating.
    *_rules(
        "after",
        r"(?:перев\w*|tradu\w*|übersetz\w*|ubersetz\w*)\s+(?:на|en|al|a|para\s+o|para|in|ins|auf|nach)\s+(?:l[ae']\s*)?",
        then=r"(?![\w-])",
    ),
)
_SOURCE_RULES = (
    *_rules(
        "after",
        r"\bsource[ _]lang(?:uage)?(?:\s+is)?\s*[:：=]?\s*",
        r"(?:源语言|源語言|原文语言|原文語言)\s*[:：为為是]?\s*",
        r"\bfrom\s+(?:the\s+)?",
        rf"(?:从|從|将|將|把){_GAP}",
    ),
    *_rules("before", r"\s*(?:->|→|=>)", r"\s+(?:in)?to\s", rf"{_GAP}から", rf"{_GAP}에서"),
)


def _name_after(prompt: str, pos: int, then: re.Pattern[str] | None) -> str:
    m = _NAME_AT.match(prompt, pos)
    if m is None:
        return _code_after(prompt, pos) if then is None else ""
    if then is not None and then.match(prompt, m.end()) is None:
        return ""
    return _IN_PROMPTS.get(_fold(m.group()), "")


def _code_after(prompt: str, pos: int) -> str:
    """A language code as a client spells it ('pt-BR', 'en_US', 'zh-Hant-TW', 'it') standing at `pos`.

    Codes with a region are unmistakable anywhere; a bare code that is also an English word ("it",
    "no", "hi") counts only where it ends the instruction, as in the plugin's "Translate to {{to}}:".
    """
    m = _CODE_AT.match(prompt, pos)
    if m is None:
        return ""
    code = normalize_language(m.group("code"))
    if code not in NAMES:
        return ""
    bare = "-" not in m.group("code") and "_" not in m.group("code")
    if bare and m.group("code").lower() in _AMBIGUOUS_CODES and not _ENDS_INSTRUCTION.match(prompt, m.end()):
        return ""
    return code


def _name_before(prompt: str, end: int) -> str:
    for length in _LENGTHS:
        start = end - length
        if start < 0:
            continue
        code = _IN_PROMPTS.get(_fold(prompt[start:end]))
        if code is None:
            continue
        latin = _LATIN_CHAR.match(prompt, start) is not None
        if latin and start > 0 and _LATIN_CHAR.match(prompt, start - 1):
            continue  # "German" inside "Germany's"
        return code
    return ""


def _first(rules: tuple[_Rule, ...], prompt: str) -> str:
    for rule in rules:
        for m in rule.marker.finditer(prompt):
            code = _name_after(prompt, m.end(), rule.then) if rule.side == "after" else _name_before(prompt, m.start())
            if code:
                return code
    return ""


def resolve(value: str) -> str | None:
    """Our code for a language code or name ('zh-CN', 'Simplified Chinese', '简体中文', '日本語'), else None."""
    text = value.strip()
    if not text:
        return None
    code = normalize_language(text)
    if code in NAMES:
        return code
    return _BY_NAME.get(_fold(text))


@functools.lru_cache(maxsize=512)
def _scan(prompt: str) -> tuple[str, str]:
    return _first(_SOURCE_RULES, prompt), _first(_TARGET_RULES, prompt)


def prompt_languages(prompts: Iterable[str]) -> tuple[str, str]:
    """(source, target) codes named in the prompts, earlier prompts first; "" where none is named."""
    source = target = ""
    for prompt in prompts:
        if not prompt:
            continue
        # Clients repeat the same system prompt on every request: remember the answer.
        found_source, found_target = _scan(prompt) if len(prompt) <= 8192 else _scan.__wrapped__(prompt)
        source = source or found_source
        target = target or found_target
        if source and target:
            break
    return source, target


# "into it, write …": after "to"/"into", a code as a template substituted it, ending where a word would.
_TEMPLATE_TARGET = re.compile(
    r"\b(?:in)?to\s+(?:the\s+)?(?P<code>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,2})(?=[\s,.;:!?)\]]|\Z)"
)


def template_target(prompt: str) -> str:
    """The target a filled-in template names with a bare code mid-sentence, codes that are also English words
    included ("translate the text field into it, write …"); only for prompts known to be such a template."""
    for m in _TEMPLATE_TARGET.finditer(prompt):
        code = normalize_language(m.group("code"))
        if code in NAMES:
            return code
    return ""


# The plugin's own spelling of the two Chinese scripts; other codes are the same on both sides.
_PLUGIN_CODES = {"zh": "zh-CN", "zh-Hant": "zh-TW"}


def plugin_code(code: str) -> str:
    """A code of ours spelled the way Immersive Translate spells it ('zh' → 'zh-CN')."""
    return _PLUGIN_CODES.get(code, code)
