"""What real OpenAI-format translation clients send, read from their public source: data for the shim's tests.

Each entry is one request shape a client builds: its messages as str.format templates ({text} where the client puts
the text, {to} / {from} the target / source values it writes, {n} the number of items of a batch; every other brace
doubled), the language values it writes with the codes of ours they mean (translane.languages.NAMES), the body
fields it sets, and the rule by which it reads the answer back, written as a small function. docs/clients.md says
the same per client in prose. The strings below are quoted from the cited files at the cited commits; nothing here
calls the shim.

`task` says what the request asks for: "translate" (translate {text} into the target, and nothing else),
"dictionary" (a word lookup: the answer is not a translation), "rewrite" (a style, dialect or format the answer
must follow beyond translation). `target_named` is False where the request itself does not name the target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "BATCH_PROMPTS",
    "CLIENT_PROBES",
    "CLIENT_PROMPTS",
    "BatchPrompt",
    "ClientPrompt",
]


def _as_sent(content: str) -> str:
    """The answer exactly as the client keeps it: no cleanup at all."""
    return content


@dataclass(frozen=True)
class ClientPrompt:
    """One request shape a client sends for a single text."""

    client: str  # name and version: "bilingual_book_maker 1.3.1"
    source: str  # "owner/repo@commit:path" (or a published package) where the template is read
    messages: tuple[tuple[str, str], ...]  # (role, template), in the order sent
    targets: tuple[tuple[str, str], ...]  # (value the client writes for {to}, our code); where no template has {to},
    # the client's target setting that selects this form
    source_value: str = ""  # what the client writes for {from} ("English", "auto", "detected language")
    parse: Callable[[str], str] = str.strip  # the client's own rule: answer content -> the translation it keeps
    fields: Mapping[str, Any] = field(default_factory=dict)  # other body fields it sends
    task: str = "translate"
    target_named: bool = True
    note: str = ""

    def render(self, text: str, to: str, source: str = "") -> list[dict[str, str]]:
        """The messages as the client sends them for this text and these language values."""
        values = {"text": text, "to": to, "from": source or self.source_value}
        return [{"role": role, "content": template.format_map(values)} for role, template in self.messages]


@dataclass(frozen=True)
class BatchPrompt:
    """One request shape a client sends for several texts at once, and how it takes the answer apart again."""

    client: str
    source: str
    messages: tuple[tuple[str, str], ...]  # {text} is where `join` of the texts goes, {n} their count
    targets: tuple[tuple[str, str], ...]
    join: Callable[[Sequence[str]], str]  # the client's texts -> what it puts at {text}
    split: Callable[[str, Sequence[str]], list[str]]  # (answer content, texts sent) -> the translations it keeps
    answer: Callable[[Sequence[str]], str]  # translations -> an answer in the shape the client reads back whole
    source_value: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    task: str = "translate"
    target_named: bool = True
    note: str = ""

    def render(self, texts: Sequence[str], to: str, source: str = "") -> list[dict[str, str]]:
        """The messages as the client sends them for these texts and these language values."""
        values = {"text": self.join(texts), "to": to, "from": source or self.source_value, "n": str(len(texts))}
        return [{"role": role, "content": template.format_map(values)} for role, template in self.messages]


def _template(text: str, placeholders: Mapping[str, str]) -> str:
    """A client's literal prompt as our template: braces doubled, then each client placeholder put in as ours."""
    out = text.replace("{", "{{").replace("}", "}}")
    for theirs, ours in placeholders.items():
        out = out.replace(theirs.replace("{", "{{").replace("}", "}}"), "{" + ours + "}")
    return out


# -- Immersive Translate (browser extension; closed source) ---------------------------------------------------------
# Its templates are published in its default configuration and its prompt docs; the rest is below in its own syntax
# ({{to}}, {{text}}, {{yaml}}, env variables), quoted from:
IMT_CONFIG = (
    "immersive-translate/config@0d03c2e2b7b99302e561d595970705bb32a4e253:dist/default_config.json"
    " (translationServices.ai, which the openai service extends; releaseVersion 1.30.2)"
)
IMT_DOCS = (
    "immersive-translate/i18ns@9780b93c02af5cd19a84ba50c3ab340cf16b22ce:"
    "official/i18n/en-US/docusaurus-plugin-content-docs/current/prompts.md"
)
IMT_DOCS_ADVANCED = (
    "immersive-translate/i18ns@9780b93c02af5cd19a84ba50c3ab340cf16b22ce:"
    "official/i18n/en-US/docusaurus-plugin-content-docs/current/advanced.md (Custom Multilingual Prompts)"
)
IMT_EXPERTS = "immersive-translate/prompts@01b708e898eebc04e2a24c764a668b58ef49fb58:plugins/"

IMT_SYSTEM = (
    "You are a professional {{to}} native translator who needs to fluently translate text into "
    "{{to}}.\n\n## Translation Rules\n"
    "1. Output only the translated content, without explanations or additional content (such as "
    '"Here\'s the translation:" or "Translation as follows:")\n'
    "2. The returned translation must maintain exactly the same number of paragraphs and format as "
    "the original text\n"
    "3. If the text contains HTML tags, consider where the tags should be placed in the "
    "translation while maintaining fluency\n"
    "4. For content that should not be translated (such as proper nouns, code, etc.), keep the "
    "original text.\n"
    "5. If input contains %%, use %% in your output, if input has no %%, don't use %% in your "
    "output{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n## OUTPUT FORMAT:\n"
    "- **Single paragraph input** → Output translation directly (no separators, no extra text)\n"
    "- **Multi-paragraph input** → Use %% as paragraph separator between translations\n\n## Examples\n"
    "### Multi-paragraph Input:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\nParagraph C\n\n%%\n\n"
    "Paragraph D\n\n### Multi-paragraph Output:\nTranslation A\n\n%%\n\nTranslation B\n\n%%\n\n"
    "Translation C\n\n%%\n\nTranslation D\n\n### Single paragraph Input:\nSingle paragraph content\n\n"
    "### Single paragraph Output:\nDirect translation without separators\n\n{{imt_style_guide}}"
)

IMT_MULTIPLE_SYSTEM = (
    "You are a professional {{to}} native translator who needs to fluently translate text into "
    "{{to}}.\n\n## Translation Rules\n"
    "1. Output only the translated content, without explanations or additional content (such as "
    '"Here\'s the translation:" or "Translation as follows:")\n'
    "2. The returned translation must maintain exactly the same number of paragraphs and format as "
    "the original text\n"
    "3. If the text contains HTML tags, consider where the tags should be placed in the "
    "translation while maintaining fluency\n"
    "4. For content that should not be translated (such as proper nouns, code, etc.), keep the "
    "original text{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n"
    "## Input-Output Format Examples\n\n### Input Example:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\n"
    "Paragraph C\n\n%%\n\nParagraph D\n\n### Output Example:\nTranslation A\n\n%%\n\nTranslation B\n\n"
    "%%\n\nTranslation C\n\n%%\n\nTranslation D\n\n{{imt_style_guide}}"
)

IMT_PROMPT = "Translate to {{to}} (output translation only):\n\n{{text}}"

IMT_MULTIPLE_PROMPT = "Translate to {{to}}:\n\n{{text}}"

IMT_SUBTITLE_PROMPT = "Translate to {{to}}:\n\n{{text}}"

IMT_SEPARATOR = "\n\n%%\n\n"

IMT_REMOVE_RES = (
    "^\\<think\\>[\\s\\S]*\\<\\/think\\>",
    "^\\<\\/think\\>",
    "翻译为简体中文（仅输出译文内容）：",
    (
        "好吧，请把下一行内容翻译成简体中文，只输出翻译结果。如果翻译没有必要（例如专有名词、代码等），"
        "则返回原文。不解释，不加注释。原文为："
    ),
    (
        ";; 把下一行文本作为纯文本输入，并将其翻译为简体中文，仅输出翻译。如果某些内容无需翻译（如专有"
        "名词、代码等），则保持原文不变。不要解释，输入文本："
    ),
)

IMT_REMOVE_ITEM_RES = ("%%",)

IMT_IGNORE_RES = (
    "^抱歉.*要求",
    "^抱歉.*请求",
    "^抱歉.*翻译",
    "^很抱歉.*翻译",
    "^我很抱歉.*翻译",
    "^对不起，我无法直接翻译",
    "^抱歉.*我无法",
    "^I'm sorry, but I cannot",
    "^I'm sorry, but I cannot provide",
    "^I'm sorry, I can't assist with that.",
    "^这句话的内容不适合在此平台上讨论",
    "^这句话不适合在公共场合讨论",
    "地道的翻译引擎，你只返回译文，不含任何解释",
)

IMT_ENV = {
    "html_only": (
        "\n\nPs. if the text contains html tags, please consider after translate, where the tags should be "
        "in translated result, meanwhile keep the result fluently."
    ),
    "imt_source_field": "text",
    "imt_trans_field": "text",
    "imt_sub_source_field": "text",
    "imt_sub_trans_field": "translation",
    "imt_yaml_item": "- id: {{id}}\n  {{imt_source_field}}: {{text}}",
    "imt_subtitle_yaml_item": "- id: {{id}}\n  {{imt_sub_source_field}}: {{text}}",
    "normal_result_yaml_example": (
        "<example>\nInput:\n  - id: 1\n    {{imt_source_field}}: Source\nOutput:\n  - id: 1\n"
        "    {{imt_trans_field}}: Translation\n</example>"
    ),
    "subtitle_result_yaml_example": (
        "<example>\nInput:\n  - id: 1\n    {{imt_sub_source_field}}: ...\n  - id: 2\n"
        "    {{imt_sub_source_field}}: ...\n  - id: 3\n    {{imt_sub_source_field}}: ...\nOutput:\n"
        "  - id: 1\n    {{imt_sub_source_field}}: ...\n  - id: 2\n    {{imt_sub_source_field}}: ...\n"
        "  - id: 3\n    {{imt_sub_source_field}}: ...\n</example>"
    ),
    "title_prompt": "\n\n## Context Awareness\nDocument Metadata:\nTitle: “{{imt_title}}”",
}

IMT_LANG_OVERRIDES = {
    "auto2zh-CN": {
        "systemPrompt": (
            "你是一个专业的简体中文母语译者，需将文本流畅地翻译为简体中文。\n\n## 翻译规则\n"
            '1. 仅输出译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "2. 返回的译文必须和原文保持完全相同的段落数量和格式\n"
            "3. 如果文本包含 HTML 标签，请在翻译后考虑标签应放在译文的哪个位置，同时保持译文的流畅性\n"
            "4. 对于无需翻译的内容（如专有名词、代码等），请保留原文{{title_prompt}}{{summary_prompt}}{{ter"
            "ms_prompt}}\n\n"
        ),
        "multipleSystemPrompt": (
            "你是一个专业的简体中文母语译者，需将文本流畅地翻译为简体中文。\n\n## 翻译规则\n"
            '1. 仅输出译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "2. 返回的译文必须和原文保持完全相同的段落数量和格式\n"
            "3. 如果文本包含 HTML 标签，请在翻译后考虑标签应放在译文的哪个位置，同时保持译文的流畅性\n"
            "4. 对于无需翻译的内容（如专有名词、代码等），请保留原文\n"
            "{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n## 输入输出格式示例\n\n### 输入示例:\n"
            "Paragraph A\n\n%%\n\nParagraph B\n\n%%\n\nParagraph C\n\n%%\n\nParagraph D\n\n### 输出示例:\n"
            "Translation A\n\n%%\n\nTranslation B\n\n%%\n\nTranslation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "翻译为简体中文（仅输出译文内容）：\n\n{{text}}",
        "multiplePrompt": "翻译为简体中文：\n\n{{text}}",
        "subtitlePrompt": "翻译为简体中文：\n\n{{text}}",
    },
    "auto2zh-TW": {
        "systemPrompt": (
            "你是一個專業的繁體中文母語譯者，將文本流暢地翻譯為台湾地区繁體中文。遵循以下規則：\n"
            "1. 僅輸出譯文內容，禁止解釋或添加任何額外內容（如「以下是翻譯：」、「譯文如下：」等）\n"
            "2. 如果文本包含 HTML 標籤，請在翻譯後保持標籤位置正確，並確保譯文流暢\n"
            "3. 對於無需翻譯的內容（如專有名詞、代碼等），請保留原文{{title_prompt}}{{summary_prompt}}{{ter"
            "ms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "你是一個專業的繁體中文母語譯者，需將文本流暢地翻譯為台湾地区繁體中文。\n\n## 翻譯規則\n"
            "1. 僅輸出譯文內容，禁止解釋或添加任何額外內容（如「以下是翻譯：」、「譯文如下：」等）\n"
            "2. 返回的譯文必須和原文保持完全相同的段落數量和格式\n"
            "3. 如果文本包含 HTML 標籤，請在翻譯後考慮標籤應放在譯文的哪個位置，同時保持譯文的流暢性\n"
            "4. 對於無需翻譯的內容（如專有名詞、代碼等），請保留原文{{title_prompt}}{{summary_prompt}}{{ter"
            "ms_prompt}}\n\n## 輸入輸出格式示例\n\n### 輸入示例:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\n"
            "Paragraph C\n\n%%\n\nParagraph D\n\n### 輸出示例:\nTranslation A\n\n%%\n\nTranslation B\n\n%%\n\n"
            "Translation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "翻譯為台湾地区繁體中文（僅輸出譯文內容）：\n\n{{text}}",
        "multiplePrompt": "翻譯為台湾地区繁體中文：\n\n{{text}}",
        "subtitlePrompt": "翻譯為台湾地区繁體中文：\n\n{{text}}",
    },
    "auto2en": {
        "systemPrompt": (
            "You are a professional English native translator who fluently translates text into English. "
            "Follow these rules:\n"
            "1. Output only the translated content, without explanations or additional content (such as "
            '"Here is the translation:" or "Translation as follows:")\n'
            "2. If the text contains HTML tags, maintain correct tag placement after translation and "
            "ensure the translation flows naturally\n"
            "3. For content that should not be translated (such as proper nouns, code, etc.), keep the "
            "original text{{title_prompt}}{{summary_prompt}}{{terms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "You are a professional English native translator who needs to fluently translate text into "
            "English.\n\n## Translation Rules\n"
            "1. Output only the translated content, without explanations or additional content (such as "
            '"Here is the translation:" or "Translation as follows:")\n'
            "2. The returned translation must maintain exactly the same number of paragraphs and format as "
            "the original text\n"
            "3. If the text contains HTML tags, consider where the tags should be placed in the "
            "translation while maintaining fluency\n"
            "4. For content that should not be translated (such as proper nouns, code, etc.), keep the "
            "original text{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n"
            "## Input/Output Format Examples\n\n### Input Example:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\n"
            "Paragraph C\n\n%%\n\nParagraph D\n\n### Output Example:\nTranslation A\n\n%%\n\nTranslation B\n\n"
            "%%\n\nTranslation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "Translate to English (output translation only):\n\n{{text}}",
        "multiplePrompt": "Translate to English:\n\n{{text}}",
        "subtitlePrompt": "Translate to English:\n\n{{text}}",
    },
    "auto2ja": {
        "systemPrompt": (
            "あなたは日本語のネイティブ翻訳者であり、テキストを流暢な日本語に翻訳します。以下のルールに従っ"
            "てください：\n"
            "1. 翻訳内容のみを出力し、説明や追加コンテンツ（「以下は翻訳です：」「翻訳文は次の通りです：」"
            "など）を加えないでください\n"
            "2. テキストに HTML タグが含まれている場合は、翻訳後もタグの位置を正確に保ち、翻訳が自然に流れ"
            "るようにしてください\n"
            "3. 翻訳する必要のないコンテンツ（固有名詞、コードなど）については、原文のまま保持してください{"
            "{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n{{imt_style_guide}}"
        ),
        "multipleSystemPrompt": (
            "あなたは日本語のネイティブ翻訳者であり、テキストを流暢な日本語に翻訳する必要があります。\n\n"
            "## 翻訳ルール\n"
            "1. 翻訳内容のみを出力し、説明や追加コンテンツ（「以下は翻訳です：」「翻訳文は次の通りです：」"
            "など）を加えないでください\n"
            "2. 返される翻訳は、原文とまったく同じ段落数とフォーマットを維持する必要があります\n"
            "3. テキストに HTML タグが含まれている場合は、翻訳の流暢さを保ちながら、タグを翻訳のどこに配置"
            "すべきかを考慮してください\n"
            "4. 翻訳する必要のないコンテンツ（固有名詞、コードなど）については、原文のまま保持してください{"
            "{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n## 入出力形式の例\n\n### 入力例:\n"
            "Paragraph A\n\n%%\n\nParagraph B\n\n%%\n\nParagraph C\n\n%%\n\nParagraph D\n\n### 出力例:\n"
            "Translation A\n\n%%\n\nTranslation B\n\n%%\n\nTranslation C\n\n%%\n\nTranslation D\n\n"
            "{{imt_style_guide}}"
        ),
        "prompt": "日本語に翻訳してください（翻訳内容のみを出力）：\n\n{{text}}",
        "multiplePrompt": "日本語に翻訳してください：\n\n{{text}}",
        "subtitlePrompt": "日本語に翻訳してください：\n\n{{text}}",
    },
    "auto2ko": {
        "systemPrompt": (
            "당신은 한국어 원어민 번역가로서 텍스트를 유창한 한국어로 번역합니다. 다음 규칙을 따르세요:\n"
            '1. 번역된 내용만 출력하고, 설명이나 추가 내용 (예: "다음은 번역입니다:" 또는 "번역은 다음과 '
            '같습니다:" 등) 을 추가하지 마세요\n'
            "2. 텍스트에 HTML 태그가 포함된 경우, 번역 후 태그 위치를 올바르게 유지하고 번역이 자연스럽게 "
            "흐르도록 하세요\n3. 번역할 필요가 없는 내용 (고유명사, 코드 등) 은 원문 그대로 "
            "유지하세요{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n{{imt_style_guide}}"
        ),
        "multipleSystemPrompt": (
            "당신은 한국어 원어민 번역가로서 텍스트를 유창한 한국어로 번역해야 합니다.\n\n## 번역 규칙\n"
            '1. 번역된 내용만 출력하고, 설명이나 추가 내용 (예: "다음은 번역입니다:" 또는 "번역은 다음과 '
            '같습니다:" 등) 을 추가하지 마세요\n'
            "2. 반환된 번역은 원문과 정확히 동일한 단락 수와 형식을 유지해야 합니다\n"
            "3. 텍스트에 HTML 태그가 포함된 경우, 번역의 자연스러운 흐름을 유지하면서 태그를 번역의 어디에 "
            "배치해야 할지 고려하세요\n4. 번역할 필요가 없는 내용 (고유명사, 코드 등) 은 원문 그대로 "
            "유지하세요{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n## 입력/출력 형식 예시\n\n"
            "### 입력 예시:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\nParagraph C\n\n%%\n\nParagraph D\n\n"
            "### 출력 예시:\nTranslation A\n\n%%\n\nTranslation B\n\n%%\n\nTranslation C\n\n%%\n\n"
            "Translation D\n\n{{imt_style_guide}}"
        ),
        "prompt": "한국어로 번역하세요 (번역된 내용만 출력):\n\n{{text}}",
        "multiplePrompt": "한국어로 번역하세요:\n\n{{text}}",
        "subtitlePrompt": "한국어로 번역하세요:\n\n{{text}}",
    },
    "auto2ru": {
        "systemPrompt": (
            "Вы профессиональный переводчик-носитель русского языка, который свободно переводит тексты на "
            "русский язык. Следуйте этим правилам:\n"
            "1. Выводите только переведенный контент, без пояснений или дополнительного содержания "
            '(например, "Вот перевод:" или "Перевод следующий:")\n'
            "2. Если текст содержит HTML-теги, сохраняйте правильное расположение тегов после перевода и "
            "обеспечивайте естественность перевода\n"
            "3. Для содержания, которое не требует перевода (например, имена собственные, код и т.д.), "
            "сохраняйте оригинальный текст{{title_prompt}}{{summary_prompt}}{{terms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "Вы профессиональный переводчик-носитель русского языка, который должен свободно переводить "
            "тексты на русский язык.\n\n## Правила перевода\n"
            "1. Выводите только переведенный контент, без пояснений или дополнительного содержания "
            '(например, "Вот перевод:" или "Перевод следующий:")\n'
            "2. Возвращаемый перевод должен сохранять точно такое же количество абзацев и формат, как в "
            "оригинальном тексте\n"
            "3. Если текст содержит HTML-теги, учитывайте, где теги должны быть размещены в переводе, "
            "сохраняя при этом естественность текста\n"
            "4. Для содержания, которое не требует перевода (например, имена собственные, код и т.д.), "
            "сохраняйте оригинальный текст{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n"
            "## Примеры формата ввода/вывода\n\n### Пример ввода:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\n"
            "Paragraph C\n\n%%\n\nParagraph D\n\n### Пример вывода:\nTranslation A\n\n%%\n\nTranslation B\n\n"
            "%%\n\nTranslation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "Переведите на русский язык (выведите только переведенный контент):\n\n{{text}}",
        "multiplePrompt": "Переведите на русский язык:\n\n{{text}}",
        "subtitlePrompt": "Переведите на русский язык:\n\n{{text}}",
    },
    "auto2fr": {
        "systemPrompt": (
            "Vous êtes un traducteur professionnel de langue maternelle française qui traduit couramment "
            "des textes en français. Suivez ces règles :\n"
            "1. Ne produisez que le contenu traduit, sans explications ni contenu supplémentaire (comme "
            '"Voici la traduction :" ou "Traduction comme suit :")\n'
            "2. Si le texte contient des balises HTML, maintenez le placement correct des balises après la "
            "traduction et assurez-vous que la traduction soit fluide\n"
            "3. Pour le contenu qui ne doit pas être traduit (comme les noms propres, le code, etc.), "
            "conservez le texte original{{title_prompt}}{{summary_prompt}}{{terms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "Vous êtes un traducteur professionnel de langue maternelle française qui doit traduire "
            "couramment des textes en français.\n\n## Règles de traduction\n"
            "1. Ne produisez que le contenu traduit, sans explications ni contenu supplémentaire (comme "
            '"Voici la traduction :" ou "Traduction comme suit :")\n'
            "2. La traduction retournée doit maintenir exactement le même nombre de paragraphes et le même "
            "format que le texte original\n"
            "3. Si le texte contient des balises HTML, considérez où les balises doivent être placées dans "
            "la traduction tout en maintenant la fluidité\n"
            "4. Pour le contenu qui ne doit pas être traduit (comme les noms propres, le code, etc.), "
            "conservez le texte original{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n"
            "## Exemples de format d'entrée/sortie\n\n### Exemple d'entrée :\nParagraph A\n\n%%\n\n"
            "Paragraph B\n\n%%\n\nParagraph C\n\n%%\n\nParagraph D\n\n### Exemple de sortie :\nTranslation A\n"
            "\n%%\n\nTranslation B\n\n%%\n\nTranslation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "Traduisez en français (ne produisez que le contenu traduit) :\n\n{{text}}",
        "multiplePrompt": "Traduisez en français :\n\n{{text}}",
        "subtitlePrompt": "Traduisez en français :\n\n{{text}}",
    },
    "auto2es": {
        "systemPrompt": (
            "Eres un traductor profesional nativo de español que traduce textos con fluidez al español. "
            "Sigue estas reglas:\n"
            "1. Produce únicamente el contenido traducido, sin explicaciones ni contenido adicional (como "
            '"Aquí está la traducción:" o "La traducción es la siguiente:")\n'
            "2. Si el texto contiene etiquetas HTML, mantén la ubicación correcta de las etiquetas después "
            "de la traducción y asegúrate de que la traducción fluya naturalmente\n"
            "3. Para contenido que no debe traducirse (como nombres propios, código, etc.), mantén el "
            "texto original{{title_prompt}}{{summary_prompt}}{{terms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "Eres un traductor profesional nativo de español que necesita traducir textos con fluidez al "
            "español.\n\n## Reglas de traducción\n"
            "1. Produce únicamente el contenido traducido, sin explicaciones ni contenido adicional (como "
            '"Aquí está la traducción:" o "La traducción es la siguiente:")\n'
            "2. La traducción devuelta debe mantener exactamente el mismo número de párrafos y formato que "
            "el texto original\n"
            "3. Si el texto contiene etiquetas HTML, considera dónde deben colocarse las etiquetas en la "
            "traducción mientras mantienes la fluidez\n"
            "4. Para contenido que no debe traducirse (como nombres propios, código, etc.), mantén el "
            "texto original{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n"
            "## Ejemplos de formato de entrada/salida\n\n### Ejemplo de entrada:\nParagraph A\n\n%%\n\n"
            "Paragraph B\n\n%%\n\nParagraph C\n\n%%\n\nParagraph D\n\n### Ejemplo de salida:\nTranslation A\n\n"
            "%%\n\nTranslation B\n\n%%\n\nTranslation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "Traduce al español (produce únicamente el contenido traducido):\n\n{{text}}",
        "multiplePrompt": "Traduce al español:\n\n{{text}}",
        "subtitlePrompt": "Traduce al español:\n\n{{text}}",
    },
    "auto2pt": {
        "systemPrompt": (
            "Você é um tradutor profissional nativo de português que traduz textos fluentemente para o "
            "português. Siga estas regras:\n"
            '1. Produza apenas o conteúdo traduzido, sem explicações ou conteúdo adicional (como "Aqui '
            'está a tradução:" ou "A tradução é a seguinte:")\n'
            "2. Se o texto contiver tags HTML, mantenha o posicionamento correto das tags após a tradução "
            "e garanta que a tradução flua naturalmente\n"
            "3. Para conteúdo que não deve ser traduzido (como nomes próprios, código, etc.), mantenha o "
            "texto original{{title_prompt}}{{summary_prompt}}{{terms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "Você é um tradutor profissional nativo de português que precisa traduzir textos fluentemente "
            "para o português.\n\n## Regras de tradução\n"
            '1. Produza apenas o conteúdo traduzido, sem explicações ou conteúdo adicional (como "Aqui '
            'está a tradução:" ou "A tradução é a seguinte:")\n'
            "2. A tradução retornada deve manter exatamente o mesmo número de parágrafos e formato do "
            "texto original\n"
            "3. Se o texto contiver tags HTML, considere onde as tags devem ser colocadas na tradução, "
            "mantendo a fluência\n"
            "4. Para conteúdo que não deve ser traduzido (como nomes próprios, código, etc.), mantenha o "
            "texto original{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n"
            "## Exemplos de formato de entrada/saída\n\n### Exemplo de entrada:\nParagraph A\n\n%%\n\n"
            "Paragraph B\n\n%%\n\nParagraph C\n\n%%\n\nParagraph D\n\n### Exemplo de saída:\nTranslation A\n\n"
            "%%\n\nTranslation B\n\n%%\n\nTranslation C\n\n%%\n\nTranslation D"
        ),
        "prompt": "Traduza para português (produza apenas o conteúdo traduzido):\n\n{{text}}",
        "multiplePrompt": "Traduza para português:\n\n{{text}}",
        "subtitlePrompt": "Traduza para português:\n\n{{text}}",
    },
    "auto2zh-CN-NE": {
        "systemPrompt": (
            "你是一个东北人翻译，请用东北人的口吻进行翻译，尽可能贴近生活，只返回译文，不含任何解释。遵循以"
            "下规则：\n"
            "1. 翻译时使用东北方言、口头语和独特表达方式，包括常见的东北词汇（嘎达、咋地、得嘞、整一个等）\n"
            "2. 保持东北人说话的语气和节奏，适当使用夸张、幽默的表达\n"
            '3. 仅输出译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "4. 如果文本包含 HTML 标签，请在翻译后保持标签位置正确，并确保译文流畅\n"
            "5. 对于无需翻译的内容（如专有名词、代码等），请保留原文{{title_prompt}}{{summary_prompt}}{{ter"
            "ms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "你是一个东北人翻译，需用东北人的口吻进行翻译，尽可能贴近生活。\n\n## 翻译规则\n"
            "1. 翻译时使用东北方言、口头语和独特表达方式，包括常见的东北词汇（嘎达、咋地、得嘞、整一个等）\n"
            "2. 保持东北人说话的语气和节奏，适当使用夸张、幽默的表达\n"
            '3. 仅输出译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "4. 返回的译文必须和原文保持完全相同的段落数量和格式\n"
            "5. 如果文本包含 HTML 标签，请在翻译后考虑标签应放在译文的哪个位置，同时保持译文的流畅性\n"
            "6. 对于无需翻译的内容（如专有名词、代码等），请保留原文{{title_prompt}}{{summary_prompt}}{{ter"
            "ms_prompt}}\n\n## 输入输出格式示例\n\n### 输入示例:\nParagraph A\n\n%%\n\nParagraph B\n\n%%\n\n"
            "Paragraph C\n\n%%\n\nParagraph D\n\n### 输出示例:\nTranslation A（东北风格）\n\n%%\n\n"
            "Translation B（东北风格）\n\n%%\n\nTranslation C（东北风格）\n\n%%\n\nTranslation D（东北风格）"
        ),
        "prompt": "用东北人的口吻翻译（只返回译文）：\n\n{{text}}",
        "multiplePrompt": "用东北人的口吻翻译：\n\n{{text}}",
        "subtitlePrompt": "用东北人的口吻翻译：\n\n{{text}}",
    },
    "wyw2zh-CN": {
        "systemPrompt": (
            "你是一个精通古文的学者，将古文流畅地翻译为现代白话文。遵循以下规则：\n"
            '1. 仅输出白话文译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "2. 保持原文的意境和精神，但使用现代人易于理解的表达方式\n"
            "3. 翻译应准确传达原文的含义、典故和文化内涵\n"
            "4. 如果文本包含特殊格式或标记，请在翻译后保持其位置正确，并确保译文流畅\n"
            "5. 对于专有名词、人名、地名等，应使用现代通用的称呼{{title_prompt}}{{summary_prompt}}{{terms_p"
            "rompt}}"
        ),
        "multipleSystemPrompt": (
            "你是一个精通古文的学者，将古文流畅地翻译为现代白话文。\n\n## 翻译规则\n"
            '1. 仅输出白话文译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "2. 返回的译文必须和原文保持完全相同的段落数量和格式\n"
            "3. 保持原文的意境和精神，但使用现代人易于理解的表达方式\n"
            "4. 翻译应准确传达原文的含义、典故和文化内涵\n"
            "5. 如果文本包含特殊格式或标记，请在翻译后考虑这些标记应放在译文的哪个位置，同时保持译文的流畅性\n"
            "6. 对于专有名词、人名、地名等，应使用现代通用的称呼{{title_prompt}}{{summary_prompt}}{{terms_p"
            "rompt}}\n\n## 输入输出格式示例\n\n### 输入示例:\n古文段落 A\n\n%%\n\n古文段落 B\n\n%%\n\n"
            "古文段落 C\n\n%%\n\n古文段落 D\n\n### 输出示例:\n白话文翻译 A\n\n%%\n\n白话文翻译 B\n\n%%\n\n"
            "白话文翻译 C\n\n%%\n\n白话文翻译 D"
        ),
        "prompt": "将古文翻译为现代白话文（仅输出译文内容）：\n\n{{text}}",
        "multiplePrompt": "将古文翻译为现代白话文：\n\n{{text}}",
        "subtitlePrompt": "将古文翻译为现代白话文：\n\n{{text}}",
    },
    "auto2wyw": {
        "systemPrompt": (
            "你是一个文言文翻译，请用文言文的方式进行翻译，尽可能贴近古风。遵循以下规则：\n"
            '1. 仅输出文言文译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "2. 使用古雅的文言表达，包括虚词（如乎、焉、哉、也）、句式和古代常用词汇\n"
            "3. 根据语境选择恰当的文体风格，可参考不同朝代的文风特点（如汉魏简约、唐宋典雅等）\n"
            "4. 翻译时注重意境和韵律之美，体现古代文人的审美与思想\n"
            "5. 如遇现代概念，应寻找恰当的典故或文言表达进行替代\n"
            "6. 如果文本包含特殊格式或标记，请在翻译后保持其位置正确，并确保译文流畅{{title_prompt}}{{summa"
            "ry_prompt}}{{terms_prompt}}"
        ),
        "multipleSystemPrompt": (
            "你是一个文言文翻译，请用文言文的方式进行翻译，尽可能贴近古风。\n\n## 翻译规则\n"
            '1. 仅输出文言文译文内容，禁止解释或添加任何额外内容（如"以下是翻译："、"译文如下："等）\n'
            "2. 返回的译文必须和原文保持完全相同的段落数量和格式\n"
            "3. 使用古雅的文言表达，包括虚词（如乎、焉、哉、也）、句式和古代常用词汇\n"
            "4. 根据语境选择恰当的文体风格，可参考不同朝代的文风特点（如汉魏简约、唐宋典雅等）\n"
            "5. 翻译时注重意境和韵律之美，体现古代文人的审美与思想\n"
            "6. 如遇现代概念，应寻找恰当的典故或文言表达进行替代\n"
            "7. 如果文本包含特殊格式或标记，请在翻译后考虑这些标记应放在译文的哪个位置，同时保持译文的流畅"
            "性{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n\n## 输入输出格式示例\n\n### 输入示例:\n"
            "现代文段落 A\n\n%%\n\n现代文段落 B\n\n%%\n\n现代文段落 C\n\n%%\n\n现代文段落 D\n\n### 输出示例:\n"
            "文言文翻译 A\n\n%%\n\n文言文翻译 B\n\n%%\n\n文言文翻译 C\n\n%%\n\n文言文翻译 D"
        ),
        "prompt": "将现代文翻译为文言文（仅输出文言文内容）：\n\n{{text}}",
        "multiplePrompt": "将现代文翻译为文言文：\n\n{{text}}",
        "subtitlePrompt": "将现代文翻译为文言文：\n\n{{text}}",
    },
}

IMT_HUNYUAN_MT = {
    "systemPrompt": "",
    "prompt": "把下面的文本翻译成 {{to}} 语言，不要额外解释\n\n{{text}}",
    "multiplePrompt": "把下面的多行文本翻译成 {{to}} 语言，不要额外解释，注意换行符\n\n{{text}}",
}

IMT_DOCS_YAML_SYSTEM = (
    "You are a professional, authentic machine translation engine.\n"
    "{{title_prompt}}{{summary_prompt}}{{terms_prompt}}\n"
)

IMT_DOCS_YAML_MULTIPLE = (
    'You will be given a YAML formatted input containing entries with "id" and '
    '"{{imt_source_field}}" fields. Here is the input:\n\n<yaml>\n{{yaml}}\n</yaml>\n\n'
    'For each entry in the YAML, translate the contents of the "{{imt_source_field}}" field into '
    '{{to}},{{html_only}} Write the translation back into the "{{imt_source_field}}" field for '
    "that entry.\n\nHere is an example of the expected format:\n\n{{normal_result_yaml_example}}\n\n"
    "Please return the translated YAML directly without wrapping <yaml> tag or include any "
    "additional information.\n"
)

IMT_DOCS_YAML_SUBTITLE = (
    'You will be given a YAML formatted subtitles containing entries with "id" and '
    '"{{imt_sub_source_field}}" fields. Here is the input:\n\n<yaml>\n{{yaml}}\n</yaml>\n\n'
    'For each entry in the YAML, translate the contents of the "{{imt_sub_source_field}}" field '
    'into {{to}},{{html_only}} Write the translation back into the "{{imt_sub_source_field}}" '
    "field for that entry.\n\nHere is an example of the expected format:\n\n"
    "{{subtitle_result_yaml_example}}\n\n"
    "Please return the translated YAML directly without wrapping <yaml> tag or include any "
    "additional information.\n"
)

IMT_DOCS_REFLECTIVE_ENV = {
    "imt_source_field": "source",
    "imt_trans_field": "step2",
    "imt_sub_source_field": "source",
    "imt_sub_trans_field": "step2",
    "imt_yaml_item": "- id: {{id}}\n  {{imt_source_field}}: {{text}}",
    "imt_subtitle_yaml_item": "- id: {{id}}\n  {{imt_sub_source_field}}: {{text}}",
}

IMT_DOCS_REFLECTIVE_MULTIPLE = (
    "Here is the YAML input:\n<yaml>\n{{yaml}}\n</yaml>\n\nPlease follow these steps:\n"
    '1. Extract the content from the "source" field in the provided YAML object.\n'
    "2. Translate the extracted content into {{to}}. Place this initial translation into the step1 "
    "field.\n"
    "3. Refine the initial translation from step1 to make it more natural and understandable in "
    "{{to}}. \n   Place this refined translation into the step2 field.\n"
    "4. Format the result as a YAML array with id, step1, and step2 fields as shown in this example:\n"
    "\n- id: 1 \n  step1: Initial translation\n  step2: Refined translation\n\n"
    "Return the translated YAML directly without any <example_output> tags or additional information.\n"
)

IMT_DOCS_OVERRIDE_JA = {
    "systemPrompt": "あなたはプロの翻訳エンジンです。",
    "prompt": "次のテキストを{{to}}に翻訳してください：\n\n<text>\n{{text}}\n</text>",
    "multiplePrompt": "<yaml>\n{{yaml}}\n</yaml>",
}

IMT_EXPERT_TECH = {
    "multipleSystemPrompt": (
        "You are a professional multi-paragraph translation engine with expertise in the technology "
        "sector. Your function is to translate texts accurately into the target {{to}}, maintaining "
        "the original format, technical terms, and abbreviations. Do not add any explanations or "
        "annotations to the translated text. {{summary_prompt}}{{terms_prompt}}"
    ),
    "subtitlePrompt": (
        "Translate all subtitle text fields ({{imt_sub_source_field}}) in the YAML-formatted video "
        "subtitles below into {{to}}, and fill in the translated text in the corresponding "
        "{{imt_sub_trans_field}}. Ensure you maintain the original formatting, accurately translate "
        "technical terms and company abbreviations, and do not add explanations or annotations. The "
        "output must be in a valid YAML format that retains both the source and translated fields.\n\n"
        "{{subtitle_result_yaml_example}}\n\nStart:\n{{yaml}}"
    ),
}

IMT_EXPERT_TECH_ENV = {
    "imt_source_field": "text",
    "imt_trans_field": "text",
    "imt_sub_source_field": "source",
    "imt_sub_trans_field": "translation",
    "imt_yaml_item": "- id: {{id}}\n  {{imt_source_field}}: {{text}}",
    "imt_subtitle_yaml_item": "- id: {{id}}\n  {{imt_sub_source_field}}: {{text}}",
    "normal_result_yaml_example": (
        "Example request:\n  - id: 1\n    {{imt_source_field}}: Source\nExample result:\n  - id: 1\n"
        "    {{imt_trans_field}}: Translation"
    ),
    "subtitle_result_yaml_example": (
        "Example request:\n  - id: 1\n    {{imt_sub_source_field}}: ...\n  - id: 2\n"
        "    {{imt_sub_source_field}}: ...\nExample response:\n  - id: 1\n"
        "    {{imt_sub_trans_field}}: ...\n    {{imt_sub_source_field}}: ...\n  - id: 2\n"
        "    {{imt_sub_trans_field}}: ...\n    {{imt_sub_source_field}}: ..."
    ),
}

IMT_EXPERT_PARAPHRASE = {
    "multipleSystemPrompt": (
        "You are a professional multi-paragraph translation engine.{{title_prompt}}{{summary_prompt}}{{terms_prompt}}"
    ),
    "multiplePrompt": (
        "Here is the YAML input:\n\n<yaml>\n{{yaml}}\n</yaml>\n\nPlease follow these steps:\n\n"
        '1. Extract the content from the "source" field in the provided YAML object.\n\n'
        "2. Translate the extracted content into {{to}}. Place this initial translation into the step1 "
        "field.\n\n"
        "3. Refine the initial translation from step1 to make it more natural and understandable in "
        "{{to}}. Place this refined translation into the step2 field.\n\n"
        "4. Format the result as a YAML array with id, step1, and step2 fields as shown in this example:\n"
        "\n- id: 1 \n  step1: Initial translation\n  step2: Refined translation\n\n"
        "Return the translated YAML directly without any <example_output> tags or additional information."
    ),
}

IMT_EXPERT_PARAPHRASE_ENV = {
    "imt_source_field": "source",
    "imt_trans_field": "step2",
    "imt_sub_source_field": "source",
    "imt_sub_trans_field": "step2",
    "imt_yaml_item": "- id: {{id}}\n  {{imt_source_field}}: {{text}}",
    "imt_subtitle_yaml_item": "- id: {{id}}\n  {{imt_sub_source_field}}: {{text}}",
}

IMT_EXPERT_GITHUB = {
    "multipleSystemPrompt": (
        "You are a professional multi-paragraph translation engine with expertise in GitHub content, "
        "capable of translating texts accurately into the specified target language, preserving "
        "technical terms, code snippets, markdown formatting, and platform-specific language. Do not "
        "add any explanations or annotations to the translated text. {{summary_prompt}}{{terms_prompt}}"
    ),
    "multiplePrompt": (
        "Translate all instances of text in GitHub content within the YAML-formatted document below "
        "into {{to}}. Insert the translation in the corresponding {{imt_trans_field}} for each entry. "
        "Ensure the original technical terms, code snippets, markdown formatting, and "
        "platform-specific language are accurately translated and retain their original formatting. Do "
        "not include explanations or annotations.\n\n{{normal_result_yaml_example}}\n\nStart:\n\n{{yaml}}"
    ),
}

IMT_EXPERT_GITHUB_ENV = {
    "imt_source_field": "text",
    "imt_trans_field": "text",
    "imt_sub_source_field": "source",
    "imt_sub_trans_field": "translation",
    "imt_yaml_item": '- id: {{id}}\n  {{imt_source_field}}: "{{text}}"',
    "imt_subtitle_yaml_item": '- id: {{id}}\n  {{imt_sub_source_field}}: "{{text}}"',
    "normal_result_yaml_example": (
        'Example request:\n  - id: 1\n    {{imt_source_field}}: "Source code comment"\nExample result:\n'
        '  - id: 1\n    {{imt_trans_field}}: "Translated code comment"'
    ),
    "subtitle_result_yaml_example": (
        'Example request:\n  - id: 1\n    {{imt_sub_source_field}}: "Source issue title"\n  - id: 2\n'
        '    {{imt_sub_source_field}}: "Another source issue description"\nExample response:\n  - id: 1\n'
        '    {{imt_sub_trans_field}}: "Translated issue title"\n'
        '    {{imt_sub_source_field}}: "Source issue title"\n  - id: 2\n'
        '    {{imt_sub_trans_field}}: "Another translated issue description"\n'
        '    {{imt_sub_source_field}}: "Another source issue description"'
    ),
}

IMT_EXPERT_WORDBYWORD = {
    "multipleSystemPrompt": (
        "You are a professional multi-paragraph translation engine with expertise in accurately "
        "translating texts into Chinese. You will split each sentence into smaller, reasonable parts, "
        "translate each part separately, and place the translated part after the original part in "
        "parentheses. Finally, concatenate the translated parts of each sentence into a single "
        "sentence. Repeat this process for every sentence in the given text. Do not add any "
        "explanations or annotations to the translated text. {{summary_prompt}}{{terms_prompt}}"
    ),
    "multiplePrompt": (
        "Translate all instances of text within the YAML-formatted document below into Chinese. For "
        "each sentence, split it into smaller, reasonable parts, translate each part separately, and "
        "place the translated part after the original part in parentheses. Ensure the original "
        "technical terms and formatting are accurately translated and retained. Do not include "
        "explanations or annotations.\nexample: |\n"
        '  - sentence: "The power of gratitude is an amazing power."\n'
        '    translation: "The power of gratitude (感恩的力量) is (是) an amazing power '
        '(一种神奇的力量)."\n  - sentence: "It can change your life in ways you never thought possible."\n'
        '    translation: "It can change your life (它可以改变你的生活) in ways (以方式) you never '
        'thought possible (你从未想到的)."\n\n{{normal_result_yaml_example}}\n\nStart:\n\n{{yaml}}'
    ),
}

IMT_EXPERT_WORDBYWORD_ENV = {
    "imt_source_field": "text",
    "imt_trans_field": "translation",
    "imt_sub_source_field": "source",
    "imt_sub_trans_field": "translation",
    "imt_yaml_item": '- id: {{id}}\n  {{imt_source_field}}: "{{text}}"',
    "imt_subtitle_yaml_item": '- id: {{id}}\n  {{imt_sub_source_field}}: "{{text}}"',
    "normal_result_yaml_example": (
        "Example request:\n  - id: 1\n"
        '    {{imt_source_field}}: "The power of gratitude is an amazing power."\nExample result:\n'
        '  - id: 1\n    {{imt_trans_field}}: "The power of gratitude(感恩的力量) is an amazing '
        'power(是一种神奇的力量)."'
    ),
}

# What the plugin writes for {{to}}: the English name from its OpenAI service's language map, or the code itself for
# a code the map lacks (the map, from a deobfuscated copy of the extension, has no "no"/"nb" and keys "pt-br" in lower
# case). Users' configurations and the project's notes also show codes as written (zh-CN, pt-BR, en-US).
IMT_TARGETS: tuple[tuple[str, str], ...] = (
    ("Simplified Chinese", "zh"),
    ("Traditional Chinese", "zh-Hant"),
    ("English", "en"),
    ("Japanese", "ja"),
    ("Korean", "ko"),
    ("French", "fr"),
    ("German", "de"),
    ("Spanish", "es"),
    ("Italian", "it"),
    ("Russian", "ru"),
    ("Portuguese", "pt"),
    ("Portuguese (Brazil)", "pt"),
    ("Indonesian", "id"),
    ("Malay", "ms"),
    ("Ukrainian", "uk"),
    ("Hindi", "hi"),
    ("Hebrew", "he"),
    ("Thai", "th"),
    ("Vietnamese", "vi"),
    ("Arabic", "ar"),
    ("Turkish", "tr"),
    ("Filipino", "fil"),
    ("Slovene", "sl"),
    ("zh-CN", "zh"),
    ("zh-TW", "zh-Hant"),
    ("pt-BR", "pt"),
    ("en-US", "en"),
    ("it", "it"),
    ("id", "id"),
    ("uk", "uk"),
    ("ms", "ms"),
    ("no", "nb"),
    ("hi", "hi"),
    ("he", "he"),
)

_IMT_VARIABLE = re.compile(r"{{(\w+)}}")
# Context the plugin fills only when it has it (a page title, a Pro summary or terms, a style guide): empty here.
_IMT_NO_CONTEXT = {"title_prompt": "", "summary_prompt": "", "terms_prompt": "", "imt_style_guide": "", "html_only": ""}
_IMT_OURS = {"to": "{to}", "from": "{from}", "text": "{text}", "yaml": "{text}"}


def _imt(template: str, env: Mapping[str, str] | None = None, **context: str) -> str:
    """A plugin template as ours: its variables filled as the plugin fills them (twice, so a variable inside a
    variable resolves), {{to}} / {{from}} as {to} / {from}, {{text}} and {{yaml}} as {text}."""
    values = {**IMT_ENV, **(env or {}), **_IMT_NO_CONTEXT, **context}
    out = template
    for _ in range(2):
        out = _IMT_VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), out)
    out = out.replace("{", "{{").replace("}", "}}")
    for name, ours in _IMT_OURS.items():
        out = out.replace("{{{{" + name + "}}}}", ours)
    return out


def _imt_env(name: str, env: Mapping[str, str] | None = None) -> str:
    """One env value with the variables inside it filled (an item template, a field name)."""
    values = {**IMT_ENV, **(env or {})}
    return _IMT_VARIABLE.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), values[name])


def _imt_clean(content: str) -> str:
    """What the plugin keeps of an answer before reading it: trimmed, its removeResRegexs taken out."""
    text = content.strip()
    for pattern in IMT_REMOVE_RES:
        text = re.sub(pattern, "", text, count=1)
    return text


def _imt_single(content: str) -> str:
    """The single-paragraph answer, as kept."""
    return _imt_clean(content)


def _imt_join_separator(texts: Sequence[str]) -> str:
    return IMT_SEPARATOR.join(texts)


def _imt_split_separator(content: str, sent: Sequence[str]) -> list[str]:
    """The %% answer read back: split on the separator it sent, each item cleaned by removeItemResRegexs; an answer
    matching the openai service's ignoreResRegexs (a refusal) is dropped and the source texts kept."""
    text = _imt_clean(content)
    if any(re.search(pattern, text) for pattern in IMT_IGNORE_RES):
        return list(sent)
    items = text.split(IMT_SEPARATOR)
    for pattern in IMT_REMOVE_ITEM_RES:
        items = [re.sub(pattern, "", item) for item in items]
    return items


def _imt_yaml_join(env: Mapping[str, str] | None = None, item: str = "imt_yaml_item") -> Callable[[Sequence[str]], str]:
    """Items built from the item template by raw substitution, ids from 1, joined by newlines."""
    template = _imt_env(item, env)

    def join(texts: Sequence[str]) -> str:
        return "\n".join(template.replace("{{id}}", str(i)).replace("{{text}}", t) for i, t in enumerate(texts, 1))

    return join


def _imt_yaml_answer(trans_field: str) -> Callable[[Sequence[str]], str]:
    """A well-formed YAML answer: the same ids, each translation in the field the plugin reads, quoted."""

    def answer(translations: Sequence[str]) -> str:
        return "\n".join(
            f"- id: {i}\n  {trans_field}: {json.dumps(t, ensure_ascii=False)}" for i, t in enumerate(translations, 1)
        )

    return answer


def _imt_yaml_split(trans_field: str, source_field: str) -> Callable[[str, Sequence[str]], list[str]]:
    """The YAML answer read back: lines opening with a backtick (fences) dropped, the rest loaded as YAML, items taken
    by position: the translation field, else the source field, else the text sent."""

    def split(content: str, sent: Sequence[str]) -> list[str]:
        text = "\n".join(line for line in _imt_clean(content).split("\n") if not line.startswith("`"))
        try:
            loaded = yaml.load(text, Loader=yaml.BaseLoader)  # every scalar a string, as js-yaml keeps text
        except yaml.YAMLError:
            return [text]
        items = loaded if isinstance(loaded, list) else []
        out = []
        for i, original in enumerate(sent):
            item = items[i] if i < len(items) else None
            if isinstance(item, dict) and item.get(trans_field):
                translated = item[trans_field]
                source_value = item.get(source_field)
                out.append(
                    source_value if translated == original and source_value and source_value != original else translated
                )
            elif isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and item.get(source_field):
                out.append(item[source_field])
            else:
                out.append(original)
        return out

    return split


IMT_FIELDS: Mapping[str, Any] = {"stream": False, "temperature": 0}
_IMT_NOTE = (
    "Non-streamed; answer read from choices[0].message.content. The system prompt also carries a page-title block"
    " when the page has one ({{title_prompt}}: '\\n\\n## Context Awareness\\nDocument Metadata:\\nTitle: “…”') and"
    " Pro summary/terms blocks; they are left empty here, as is {{imt_style_guide}}. Inline markup reaches the text as"
    " {0}, {1}… (placeholderDelimiters) and must come back untouched. The plugin rejects an answer whose token count"
    " is out of ratio to the request's (maxTokensRatio 8, minTokensRatio 0.21) and tries its next service."
)

_IMT_CLIENT = "Immersive Translate 1.30 (openai service)"

IMMERSIVE_SINGLE: tuple[ClientPrompt, ...] = (
    ClientPrompt(
        client=_IMT_CLIENT,
        messages=(("system", _imt(IMT_SYSTEM)), ("user", _imt(IMT_PROMPT))),
        parse=_imt_single,
        note="Default single-paragraph form (one paragraph collected). " + _IMT_NOTE,
        source=IMT_CONFIG,
        targets=IMT_TARGETS,
        fields=IMT_FIELDS,
    ),
    ClientPrompt(
        client=_IMT_CLIENT,
        messages=(
            ("system", _imt(IMT_SYSTEM, title_prompt=_imt_env("title_prompt", {"imt_title": "Example Domain"}))),
            ("user", _imt(IMT_PROMPT)),
        ),
        parse=_imt_single,
        note="The default single-paragraph form on a page titled 'Example Domain': the title block in the system.",
        source=IMT_CONFIG,
        targets=IMT_TARGETS,
        fields=IMT_FIELDS,
    ),
    *(
        ClientPrompt(
            client=_IMT_CLIENT,
            source=IMT_CONFIG + f" langOverrides {override}",
            messages=(("system", _imt(forms["systemPrompt"])), ("user", _imt(forms["prompt"]))),
            targets=((setting, code),),
            parse=_imt_single,
            fields=IMT_FIELDS,
            task=task,
            note=f"Target setting {setting}: the shipped override replaces the default prompts and names the target"
            " in its own words (no {{to}}). " + _IMT_NOTE,
        )
        for override, setting, code, task in (
            ("auto2zh-CN", "zh-CN", "zh", "translate"),
            ("auto2zh-TW", "zh-TW", "zh-Hant", "translate"),
            ("auto2en", "en", "en", "translate"),
            ("auto2ja", "ja", "ja", "translate"),
            ("auto2ko", "ko", "ko", "translate"),
            ("auto2ru", "ru", "ru", "translate"),
            ("auto2fr", "fr", "fr", "translate"),
            ("auto2es", "es", "es", "translate"),
            ("auto2pt", "pt", "pt", "translate"),
            ("auto2zh-CN-NE", "zh-CN-NE", "zh", "rewrite"),
            ("wyw2zh-CN", "zh-CN", "zh", "rewrite"),
        )
        for forms in (IMT_LANG_OVERRIDES[override],)
    ),
    ClientPrompt(
        client=_IMT_CLIENT,
        source=IMT_CONFIG + " langOverrides auto2wyw",
        messages=(
            ("system", _imt(IMT_LANG_OVERRIDES["auto2wyw"]["systemPrompt"])),
            ("user", _imt(IMT_LANG_OVERRIDES["auto2wyw"]["prompt"])),
        ),
        targets=(),
        parse=_imt_single,
        fields=IMT_FIELDS,
        task="rewrite",
        note="Target setting wyw (Classical Chinese, no code of ours): modern text rewritten as classical Chinese.",
    ),
    ClientPrompt(
        client=_IMT_CLIENT,
        source=IMT_CONFIG + " modelsOverrides (models: Hunyuan-MT)",
        messages=(("system", _imt(IMT_HUNYUAN_MT["systemPrompt"])), ("user", _imt(IMT_HUNYUAN_MT["prompt"]))),
        targets=IMT_TARGETS,
        parse=_imt_single,
        fields=IMT_FIELDS,
        note="For a model named like Hunyuan-MT the shipped config replaces the prompts; the system message is empty.",
    ),
    ClientPrompt(
        client=_IMT_CLIENT,
        source=IMT_DOCS_ADVANCED,
        messages=(
            ("system", _imt(IMT_DOCS_OVERRIDE_JA["systemPrompt"])),
            ("user", _imt(IMT_DOCS_OVERRIDE_JA["prompt"])),
        ),
        targets=(("Japanese", "ja"), ("ja", "ja")),
        parse=_imt_single,
        fields=IMT_FIELDS,
        note="The docs' example of a user's own langOverride (auto2ja): the text between <text> tags.",
    ),
)


def _imt_batch(
    messages: tuple[tuple[str, str], ...],
    *,
    source: str = IMT_CONFIG,
    targets: tuple[tuple[str, str], ...] = IMT_TARGETS,
    env: Mapping[str, str] | None = None,
    item: str = "",
    subtitle: bool = False,
    task: str = "translate",
    target_named: bool = True,
    note: str = "",
) -> BatchPrompt:
    """One of the plugin's batch forms: the %% separator, or YAML items when an item template is named."""
    if item:
        fields_env = {**IMT_ENV, **(env or {})}
        prefix = "imt_sub_" if subtitle else "imt_"
        split = _imt_yaml_split(fields_env[prefix + "trans_field"], fields_env[prefix + "source_field"])
        join, answer = _imt_yaml_join(env, item), _imt_yaml_answer(fields_env[prefix + "trans_field"])
    else:
        split, join, answer = _imt_split_separator, _imt_join_separator, _imt_join_separator
    return BatchPrompt(
        client=_IMT_CLIENT,
        source=source,
        messages=messages,
        targets=targets,
        join=join,
        split=split,
        answer=answer,
        fields=IMT_FIELDS,
        task=task,
        target_named=target_named,
        note=note,
    )


_IMT_DOCS_YAML_NOTE = (
    "The docs' YAML form: {{yaml}} built from imt_yaml_item (ids from 1, raw substitution, no quoting or indenting"
    " of a multi-line text), inside <yaml> tags, the target mid-sentence, an <example> block after. Answer: the same"
    " items as plain YAML (no tags, no fence), the translation in the translation field; read back by position."
)

IMMERSIVE_BATCH: tuple[BatchPrompt, ...] = (
    _imt_batch(
        (("system", _imt(IMT_MULTIPLE_SYSTEM)), ("user", _imt(IMT_MULTIPLE_PROMPT))),
        note="Default multi-paragraph form: paragraphs joined by '\\n\\n%%\\n\\n' (at most 4 a request by default);"
        " the answer must hold the same count joined the same way. " + _IMT_NOTE,
    ),
    _imt_batch(
        (("system", _imt(IMT_MULTIPLE_SYSTEM)), ("user", _imt(IMT_SUBTITLE_PROMPT))),
        note="Default subtitle form (subtitlePrompt, used for more than one cue; 4 cues a request by default): the"
        " same %% join as the multi-paragraph form.",
    ),
    *(
        _imt_batch(
            (("system", _imt(forms["multipleSystemPrompt"])), ("user", _imt(forms[kind]))),
            source=IMT_CONFIG + f" langOverrides {override}",
            targets=((setting, code),),
            task=task,
            note=f"Target setting {setting}, {kind}: the override names the target in its own words (no {{{{to}}}});"
            " %% join.",
        )
        for override, setting, code, task in (
            ("auto2zh-CN", "zh-CN", "zh", "translate"),
            ("auto2zh-TW", "zh-TW", "zh-Hant", "translate"),
            ("auto2en", "en", "en", "translate"),
            ("auto2ja", "ja", "ja", "translate"),
            ("auto2ko", "ko", "ko", "translate"),
            ("auto2ru", "ru", "ru", "translate"),
            ("auto2fr", "fr", "fr", "translate"),
            ("auto2es", "es", "es", "translate"),
            ("auto2pt", "pt", "pt", "translate"),
            ("auto2zh-CN-NE", "zh-CN-NE", "zh", "rewrite"),
        )
        for forms in (IMT_LANG_OVERRIDES[override],)
        for kind in ("multiplePrompt", "subtitlePrompt")
    ),
    _imt_batch(
        (("system", _imt(IMT_HUNYUAN_MT["systemPrompt"])), ("user", _imt(IMT_HUNYUAN_MT["multiplePrompt"]))),
        source=IMT_CONFIG + " modelsOverrides (models: Hunyuan-MT)",
        note="Hunyuan-MT models: a Chinese instruction naming {{to}}, an empty system message, %% join.",
    ),
    _imt_batch(
        (("system", _imt(IMT_DOCS_YAML_SYSTEM)), ("user", _imt(IMT_DOCS_YAML_MULTIPLE))),
        source=IMT_DOCS,
        item="imt_yaml_item",
        note=_IMT_DOCS_YAML_NOTE,
    ),
    _imt_batch(
        (
            ("system", _imt(IMT_DOCS_YAML_SYSTEM)),
            ("user", _imt(IMT_DOCS_YAML_MULTIPLE, html_only=IMT_ENV["html_only"])),
        ),
        source=IMT_DOCS,
        item="imt_yaml_item",
        note="The docs' YAML form with rich-text translation on: {{html_only}} adds a sentence after the target. "
        + _IMT_DOCS_YAML_NOTE,
    ),
    _imt_batch(
        (("system", _imt(IMT_MULTIPLE_SYSTEM)), ("user", _imt(IMT_DOCS_YAML_MULTIPLE))),
        source=IMT_DOCS + " (multiplePrompt) + " + IMT_CONFIG + " (multipleSystemPrompt)",
        item="imt_yaml_item",
        note="A user who set only the docs' YAML multiplePrompt: the default system prompt still shows %% examples. "
        + _IMT_DOCS_YAML_NOTE,
    ),
    _imt_batch(
        (("system", _imt(IMT_DOCS_YAML_SYSTEM)), ("user", _imt(IMT_DOCS_YAML_SUBTITLE))),
        source=IMT_DOCS,
        item="imt_subtitle_yaml_item",
        subtitle=True,
        note="The docs' YAML subtitle form: items from imt_subtitle_yaml_item (field 'text'); the default env names"
        " 'translation' as the field read back, while the prompt asks for the translation in 'text': the plugin"
        " takes 'translation' when present, else 'text'.",
    ),
    _imt_batch(
        (("system", _imt(IMT_DOCS_YAML_SYSTEM)), ("user", _imt(IMT_DOCS_REFLECTIVE_MULTIPLE, IMT_DOCS_REFLECTIVE_ENV))),
        source=IMT_DOCS + " (Reflective Translation)",
        env=IMT_DOCS_REFLECTIVE_ENV,
        item="imt_yaml_item",
        note="Renamed fields: items carry 'source:', the answer carries step1 and step2 and step2 is kept.",
    ),
    _imt_batch(
        (
            ("system", _imt(IMT_EXPERT_TECH["multipleSystemPrompt"], IMT_EXPERT_TECH_ENV)),
            ("user", _imt(IMT_EXPERT_TECH["subtitlePrompt"], IMT_EXPERT_TECH_ENV)),
        ),
        source=IMT_EXPERTS + "tech.yml (subtitlePrompt)",
        env=IMT_EXPERT_TECH_ENV,
        item="imt_subtitle_yaml_item",
        subtitle=True,
        note="An AI expert's subtitle form: YAML with no tags or fence after 'Start:', items 'source:', answer"
        " 'translation:'.",
    ),
    _imt_batch(
        (
            ("system", _imt(IMT_EXPERT_PARAPHRASE["multipleSystemPrompt"], IMT_EXPERT_PARAPHRASE_ENV)),
            ("user", _imt(IMT_EXPERT_PARAPHRASE["multiplePrompt"], IMT_EXPERT_PARAPHRASE_ENV)),
        ),
        source=IMT_EXPERTS + "paraphrase.yml (multiplePrompt)",
        env=IMT_EXPERT_PARAPHRASE_ENV,
        item="imt_yaml_item",
        # A refined translation is still a translation into {to}: the shim answers it as one, in the items'
        # own field, which the plugin reads when step2 is absent (see `split`).
        task="translate",
        note="Two-step paraphrase expert: step1 literal, step2 refined; step2 kept.",
    ),
    _imt_batch(
        (
            ("system", _imt(IMT_EXPERT_GITHUB["multipleSystemPrompt"], IMT_EXPERT_GITHUB_ENV)),
            ("user", _imt(IMT_EXPERT_GITHUB["multiplePrompt"], IMT_EXPERT_GITHUB_ENV)),
        ),
        source=IMT_EXPERTS + "github.yml (multiplePrompt)",
        env=IMT_EXPERT_GITHUB_ENV,
        item="imt_yaml_item",
        note="GitHub expert: items quote the text ('text: \"…\"', raw substitution, so a quote inside breaks the"
        " YAML), the example before the items, 'Start:' then the YAML with no tags.",
    ),
    _imt_batch(
        (
            ("system", _imt(IMT_EXPERT_WORDBYWORD["multipleSystemPrompt"], IMT_EXPERT_WORDBYWORD_ENV)),
            ("user", _imt(IMT_EXPERT_WORDBYWORD["multiplePrompt"], IMT_EXPERT_WORDBYWORD_ENV)),
        ),
        source=IMT_EXPERTS + "wordByWord.yml (multiplePrompt)",
        targets=(("Chinese", "zh"),),
        env=IMT_EXPERT_WORDBYWORD_ENV,
        item="imt_yaml_item",
        task="rewrite",
        note="Word-by-word expert: always into Chinese, each part followed by its translation in parentheses.",
    ),
    _imt_batch(
        (
            ("system", _imt(IMT_DOCS_OVERRIDE_JA["systemPrompt"])),
            ("user", _imt(IMT_DOCS_OVERRIDE_JA["multiplePrompt"])),
        ),
        source=IMT_DOCS_ADVANCED,
        targets=(("ja", "ja"),),
        item="imt_yaml_item",
        target_named=False,
        note="The docs' example of a user's own langOverride (auto2ja): the YAML in <yaml> tags and nothing else;"
        " the request never names the target (it is only in the user's settings).",
    ),
)


# -- bilingual_book_maker (bbook-maker 1.3.1, the chatgptapi translator) --------------------------------------------
BBM_SOURCE = (
    "bbook-maker 1.3.1 on PyPI (bbook_maker-1.3.1-py3-none-any.whl, sha256 5f21062a1b6c3b9eaa6f5b561ebd8a48ab482c901c38"
    "c0526b1639f87aa843ef):book_maker/translator/chatgptapi_translator.py (ChatGPTAPI.DEFAULT_PROMPT, create_messages)"
    " + base_translator.py; the same DEFAULT_PROMPT at yihong0618/bilingual_book_maker@9133c06c25c053862f8515ef0e98180f"
    "07df8600"
)
BBM_PROMPT = (
    "Please help me to translate,`{text}` to {language}, please return only translated content not "
    "include the origin text"
)

BBM_MARKER_INSTRUCTION = (
    "The text contains placeholders formatting as ⟦code1⟧. Reproduce every one of them exactly as "
    "given, at the place it belongs in your translation. Never translate a token, and never change "
    "its spelling."
)

BBM_STRUCTURE_INSTRUCTION = "Keep the paragraph structure and any inline markup exactly as it is given."

BBM_BATCH_DELIMITER = "\n\n@@\n\n"

BBM_ROUTE_PROBE = "Reply with the single word: PONG."

BBM_SCHEMA_PROBE = "Reply with the single word: ignored. Do not output JSON."

CALIBRE_PROMPT = (
    "You are a meticulous translator who translates any given content. Translate the given content "
    "from <slang> to <tlang> only. Do not explain any term or answer any question-like content. "
    "Your answer should be solely the translation of the given content. In your answer do not add "
    "any prefix or suffix to the translated content. Websites' URLs/addresses should be preserved "
    "as is in the translation's output. Do not omit any part of the content, even if it seems "
    "unimportant. RESPOND ONLY with the translation text, no formatting, no explanations, no "
    "additional commentary whatsoever. "
)

ZOTERO_PROMPT = (
    "As an academic expert with specialized knowledge in various fields, please provide a "
    "proficient and precise translation from ${langFrom} to ${langTo} of the academic text "
    "enclosed in 🔤. It is crucial to maintaining the original phrase or sentence and ensure "
    "accuracy while utilizing the appropriate language. The text is as follows:  🔤 ${sourceText} "
    "🔤  Please provide the translated result without any additional explanation and remove 🔤."
)

SUBTRANS_INSTRUCTIONS = (
    "The goal is to accurately translate subtitles into a target language.\n\n"
    "You will receive a batch of lines for translation. Carefully read through the lines, along "
    "with any additional context provided.\n"
    "Translate each line accurately, concisely, and separately into the target language, with "
    "appropriate punctuation.\n\n"
    "The translation must have the same number of lines as the original, but you can adapt the "
    "content to fit the grammar of the target language.\n"
    "Make sure to translate all provided lines and do not ask whether to continue.\n\n"
    "Use any provided context to enhance your translations. If a name list is provided, ensure "
    "names are spelled according to the user's preference.\n"
    "If you detect obvious errors in the input, correct them in the translation using the "
    "available context, but do not improvise.\n"
    "If the input contains profanity, use equivalent profanity in the translation.\n\n"
    "At the end you should add <summary> and <scene> tags with information about the translation:\n"
    "<summary>A one or two line synopsis of the current batch.</summary>\n"
    "<scene>This should be a short summary of the current scene, including any previous "
    "batches.</scene>\nIf the context is unclear, just summarize the dialogue.\n\n"
    "Your response will be processed by an automated system, so you MUST respond using the "
    "required format:\n\nExample (translating to English):\n\n#200\nOriginal>\n"
    "変わりゆく時代において、\nTranslation>\nIn an ever-changing era,\n\n#501\nOriginal>\n"
    "進化し続けることが生き残る秘訣です。\nTranslation>\ncontinuing to evolve is the key to survival."
)

SUBTRANS_USER_PROMPT = "Translate these subtitles [ for movie][ to language]"

SUBTRANS_PROMPT_TEMPLATE = (
    "<context>\n{context}\n</context>\n\n{prompt}\n\n<summary>Summary of the batch</summary>\n"
    "<scene>Summary of the scene</scene>\n"
)

SUBTRANS_LINE_TEMPLATE = "#{number}\nOriginal>\n{text}\nTranslation>\n"

OT_WORD_ROLE_JA = (
    "You are a professional translation engine. Please translate the text into Japanese without "
    "explanation. When the text has only one word, please act as a professional English-Japanese "
    "dictionary, and list the original form of the word (if any), the language of the word, the "
    "corresponding phonetic notation or transcription,  all senses with parts of speech, bilingual "
    " sentence examples (at least 3) and etymology. If you think there is a spelling mistake, "
    "please tell me the most possible correct word otherwise reply in the following format:\n"
    "<word> (<original form>)\n[<language>]· / <hiragana>\n"
    "[<part of speech>] <translated meaning> /  <meaning in source language>\nExamples:\n"
    "<index>. <sentence>(<sentence translation>)\nEtymology:\n<etymology>"
)

OT_WORD_ROLE_ZH = (
    "你是一个翻译引擎，请翻译给出的文本，只需要翻译不需要解释。当且仅当文本只有一个单词时，请给出单"
    "词原始形态（如果有）、单词的语种、对应的音标或转写、所有含义（含词性）、双语示例，至少三条例句"
    "。如果你认为单词拼写错误，请提示我最可能的正确拼写，否则请严格按照下面格式给到翻译结果：\n"
    "    <单词>\n    [<语种>]· / <Pinyin>\n    [<词性缩写>] <中文含义>]\n    例句：\n"
    "    <序号><例句>(例句翻译)\n    词源：\n    <词源>"
)

SUBTRANS_FILE_PROMPT = "Please translate the following subtitles[ for movie][ to language]."

SUBTRANS_FILE_INSTRUCTIONS = (
    "The goal is to accurately translate subtitles into a target language.\n\n"
    "You will receive a batch of lines for translation. Carefully read through the lines, along "
    "with any additional context provided.\n"
    "Translate each line accurately, concisely, and separately into the target language, with "
    "appropriate punctuation.\n\n"
    "The translation must have the same number of lines as the original, but you can adapt the "
    "content to fit the grammar of the target language.\n\n"
    "Make sure to translate all provided lines and do not ask whether to continue.\n\n"
    "Use any provided context to enhance your translations. If a name list is provided, ensure "
    "names are spelled according to the user's preference.\n\n"
    "If you detect obvious errors in the input, correct them in the translation using the "
    "available context, but do not improvise.\n\n"
    "If the input contains profanity, use equivalent profanity in the translation.\n\n"
    "Add <summary> and <scene> tags before the translated subtitles, with information about the "
    "translation in the target language:\n\n"
    "<summary>A one or two line synopsis of the current batch.</summary>\n"
    "<scene>This should be a short summary of the current scene, including any previous "
    "batches.</scene>\n\nIf the context is unclear, just summarize the dialogue.\n\n"
    "Your response will be processed by an automated system, so you MUST respond using the "
    "required format:\n\nExample (translating to English):\n\n#200\nOriginal>\n"
    "変わりゆく時代において、\nTranslation>\nIn an ever-changing era,\n\n#501\nOriginal>\n"
    "進化し続けることが生き残る秘訣です。\nTranslation>\ncontinuing to evolve is the key to survival.\n"
    "\nExample (translating to German):\n\n#700\nOriginal>\nIn the age of digital transformation,\n"
    "Translation>\nIm Zeitalter der digitalen Transformation,\n\n#701\nOriginal>\n"
    "those who resist change may find themselves left behind.\nTranslation>\n"
    "diejenigen, die sich dem Wandel widersetzen,\nkönnten sich zurückgelassen finden.\n\n"
    "Example (translating to French, correcting errors and punctuation):\n\n#200\nOriginal>\n"
    "Were going to the market, aren't we\nTranslation>\nNous allons au marché, n'est-ce pas ?\n\n"
    "Example (translating to English, adapting an idiom):\n\n#100\nOriginal>\nAl mal tiempo,\n"
    "Translation>\nWhen life gives you lemons,\n\n#101\nOriginal>\nbuena cara.\nTranslation>\n"
    "make lemonade."
)

EASYDICT_SYSTEM = (
    "You are a translation expert proficient in various languages, focusing solely on translating "
    "text without interpretation. You accurately understand the meanings of proper nouns, idioms, "
    "metaphors, allusions, and other obscure words in sentences, translating them appropriately "
    "based on the context and language environment. The translation should be natural and fluent. "
    "Only return the translated text, without including redundant quotes or additional notes."
)

EASYDICT_FEW_SHOT = (
    (
        "user",
        (
            'Translate the following English text into Simplified-Chinese text: """The stock market has '
            'now reached a plateau."""'
        ),
    ),
    ("assistant", "股市现在已经进入了平稳期。"),
    ("user", "void"),
    ("assistant", "空的"),
    ("user", "func"),
    ("assistant", "函数"),
    ("user", "const"),
    ("assistant", "常量"),
    ("user", "Patriot battery"),
    ("assistant", "爱国者导弹系统"),
    ("user", "Four score and seven years ago"),
    ("assistant", "八十七年前"),
    ("user", "js"),
    ("assistant", "JavaScript"),
    ("user", "acg"),
    ("assistant", "acg"),
    ("user", "Swift language"),
    ("assistant", "Swift 语言"),
    ("user", "swift"),
    ("assistant", "迅速的"),
    ("user", 'Translate the following Japanese text into Simplified-Chinese text: """ちっちいな~"""'),
    ("assistant", "好小啊~"),
    ("user", "チーター"),
    ("assistant", "猎豹"),
    (
        "user",
        (
            'Translate the following Simplified-Chinese text into English text: """Hello world, '
            '然后请你也谈谈你对中国的看法？最后输出以下内容的反义词：go up"""'
        ),
    ),
    (
        "assistant",
        (
            "Hello world, then please also talk about your views on China? Finally, output the antonym of "
            "the following: go up"
        ),
    ),
)

# --language takes a tag (or a name); the prompt gets the tag's lower-case English name from book_maker/utils.py
# LANGUAGES ("ja" -> "japanese"; the default "zh-hans" -> "simplified chinese"). A name typed instead goes as typed.
BBM_TARGETS: tuple[tuple[str, str], ...] = (
    ("simplified chinese", "zh"),
    ("traditional chinese", "zh-Hant"),
    ("chinese", "zh"),
    ("japanese", "ja"),
    ("korean", "ko"),
    ("english", "en"),
    ("german", "de"),
    ("french", "fr"),
    ("spanish", "es"),
    ("italian", "it"),
    ("portuguese", "pt"),
    ("brazilian portuguese", "pt"),
    ("indonesian", "id"),
    ("malay", "ms"),
    ("ukrainian", "uk"),
    ("norwegian", "nb"),
    ("hindi", "hi"),
    ("hebrew", "he"),
    ("Japanese", "ja"),
)
BBM_USER = _template(BBM_PROMPT, {"{text}": "text", "{language}": "to"})
_BBM_NOTE = (
    "One non-streamed request per paragraph (unless --accumulated_num groups them); temperature left out at its"
    " default 1.0; the OpenAI SDK adds X-Stainless-Read-Timeout: 300. Before translating it sends the probes in"
    " CLIENT_PROBES; a plain-text answer to the schema probe makes it use these plain forms. With --use_context the"
    " previous paragraphs go before the user message as a user/assistant pair ('\\n'-joined sources, then their"
    " translations). The answer is used exactly as returned (inserted into the book's HTML)."
)


def _bbm_join(texts: Sequence[str]) -> str:
    return BBM_BATCH_DELIMITER.join(str(text).strip() for text in texts)


def _bbm_split(content: str, sent: Sequence[str]) -> list[str]:
    """A grouped answer read back: "(1) … (2) …" numbering when every number is there, else the pieces between
    '@@' (whitespace around it ignored), trimmed, empty ones dropped. A count other than len(sent) makes the client
    halve the group and ask again."""
    numbered = [
        re.search(rf"\({i}\)\s*(.*?)(?=\s*\({i + 1}\)|\Z)", content, re.DOTALL) for i in range(1, len(sent) + 1)
    ]
    if all(numbered):
        return [m.group(1).strip() for m in numbered if m]
    return [part.strip() for part in re.split(r"\s*@@\s*", content) if part.strip()]


# -- openai-translator (browser extension / desktop app) ------------------------------------------------------------
OT_SOURCE = (
    "openai-translator/openai-translator@c3bc4bb5de7404d597fe7cd6cea44941f1831bd3:src/common/translate.ts"
    " (+ src/common/lang/index.ts getLangConfig, src/common/lang/data.ts, src/common/engines/abstract-openai.ts)"
)
# Translate mode names the target by the language's own name (LANG_CONFIGS[code].name); other modes and the
# dictionary prompts use the English name.
OT_TARGETS: tuple[tuple[str, str], ...] = (
    ("简体中文", "zh"),
    ("繁體中文", "zh-Hant"),
    ("English", "en"),
    ("American English", "en"),
    ("British English", "en"),
    ("日本語", "ja"),
    ("한국어", "ko"),
    ("Deutsch", "de"),
    ("Français", "fr"),
    ("Español", "es"),
    ("Italiano", "it"),
    ("Português", "pt"),
    ("Русский", "ru"),
    ("Bahasa Indonesia", "id"),
    ("Українська", "uk"),
    ("עברית", "he"),
    ("हिन्दी", "hi"),
    ("Tiếng Việt", "vi"),
    ("ไทย", "th"),
    ("Türkçe", "tr"),
    ("العربية", "ar"),
    ("Nederlands", "nl"),
    ("Polski", "pl"),
)
OT_FIELDS: Mapping[str, Any] = {
    "stream": True,
    "temperature": 0,
    "top_p": 1,
    "frequency_penalty": 1,
    "presence_penalty": 1,
}
_OT_NOTE = (
    "One user message: rolePrompt + '\\n\\n' + commandPrompt; the text is trimEnd()-ed. Streamed; the answer is the"
    " concatenation of delta.content of the chunks before the first chunk with a finish_reason, whose own content is"
    " never read (a last delta sent together with finish_reason is lost)."
)
OT_ROLE = "You are a professional translator."

# -- pot (pot-app/pot-desktop 3.0.7, the OpenAI service) -------------------------------------------------------------
POT_SOURCE = (
    "pot-app/pot-desktop@afebdfe18526524618b327f01a43e2637773a988:src/services/translate/openai/Config.jsx"
    " (default promptList, defaultRequestArguments) + index.jsx (placeholders, parsing) + info.ts (Language)"
)
POT_SYSTEM = (
    "You are a professional translation engine, please translate the text into a colloquial, professional, elegant"
    " and fluent content, without the style of machine translation. You must only translate the text content, never"
    " interpret it."
)
POT_TARGETS: tuple[tuple[str, str], ...] = (
    ("Simplified Chinese", "zh"),
    ("Traditional Chinese", "zh-Hant"),
    ("Japanese", "ja"),
    ("English", "en"),
    ("Korean", "ko"),
    ("French", "fr"),
    ("Spanish", "es"),
    ("Russian", "ru"),
    ("German", "de"),
    ("Italian", "it"),
    ("Turkish", "tr"),
    ("Portuguese", "pt"),
    ("Brazilian Portuguese", "pt"),
    ("Vietnamese", "vi"),
    ("Indonesian", "id"),
    ("Thai", "th"),
    ("Malay", "ms"),
    ("Arabic", "ar"),
    ("Hindi", "hi"),
    ("Norwegian Bokmål", "nb"),
    ("Norwegian Nynorsk", "nb"),
    ("Persian", "fa"),
    ("Swedish", "sv"),
    ("Polish", "pl"),
    ("Dutch", "nl"),
    ("Ukrainian", "uk"),
    ("Hebrew", "he"),
)


def _pot_parse(content: str) -> str:
    """Non-streamed answer: trimmed, one leading and one trailing double quote dropped, trimmed again."""
    target = content.strip()
    if target.startswith('"'):
        target = target[1:]
    if target.endswith('"'):
        target = target[:-1]
    return target.strip()


# -- Calibre "Ebook Translator" (bookfere/Ebook-Translator-Calibre-Plugin 2.4.2, the ChatGPT engine) ------------------
CALIBRE_SOURCE = (
    "bookfere/Ebook-Translator-Calibre-Plugin@3a04debd4913e8b79f92f2eabae85982013572d5:engines/openai.py"
    " (ChatgptTranslate.prompt, get_prompt, get_body) + lib/translation.py + lib/element.py (merge)"
)
# Language names from engines/languages.py (google), as chosen in the plugin.
CALIBRE_TARGETS: tuple[tuple[str, str], ...] = (
    ("Chinese (Simplified)", "zh"),
    ("Chinese (Traditional)", "zh-Hant"),
    ("English", "en"),
    ("Japanese", "ja"),
    ("Korean", "ko"),
    ("German", "de"),
    ("French", "fr"),
    ("Spanish", "es"),
    ("Italian", "it"),
    ("Portuguese (Brazil)", "pt"),
    ("Portuguese (Portugal)", "pt"),
    ("Indonesian", "id"),
    ("Malay", "ms"),
    ("Ukrainian", "uk"),
    ("Norwegian", "nb"),
    ("Hindi", "hi"),
    ("Hebrew", "he"),
)
CALIBRE_SYSTEM = _template(CALIBRE_PROMPT, {"<slang>": "from", "<tlang>": "to"})
CALIBRE_MERGE_SUFFIX = " Ensure that placeholders matching the pattern {{id_\\d+}} in the content are retained."
CALIBRE_FIELDS: Mapping[str, Any] = {"stream": True, "temperature": 1.0}


def _calibre_join(texts: Sequence[str]) -> str:
    """Merged paragraphs: each followed by the separator '\\n\\n' (the last one too)."""
    return "".join(text + "\n\n" for text in texts)


def _calibre_split(content: str, sent: Sequence[str]) -> list[str]:
    """The merged answer, trimmed, cut at every run of two or more newlines (a count that differs is padded or
    folded into the last item by the client)."""
    return re.split(r"\n\n+", content.strip())


# -- Zotero "Translate for Zotero" (windingwind/zotero-pdf-translate 2.4.6, the ChatGPT / custom GPT engines) --------
ZOTERO_SOURCE = (
    "windingwind/zotero-pdf-translate@ac91acaf18ac58cd7f7c49d3b39a02f506c56302:addon/prefs.js (chatGPT.prompt,"
    " the same for azureGPT) + src/utils/llmPrompt.ts + src/modules/services/gpt.ts"
)
ZOTERO_USER = _template(ZOTERO_PROMPT, {"${langFrom}": "from", "${langTo}": "to", "${sourceText}": "text"})
# The plugin's language settings hold codes (default source en-US, default target Zotero's locale), written as is.
ZOTERO_TARGETS: tuple[tuple[str, str], ...] = (
    ("zh-CN", "zh"),
    ("zh-TW", "zh-Hant"),
    ("zh-HK", "zh-Hant"),
    ("en-US", "en"),
    ("en", "en"),
    ("ja", "ja"),
    ("ja-JP", "ja"),
    ("ko-KR", "ko"),
    ("de-DE", "de"),
    ("fr-FR", "fr"),
    ("pt-BR", "pt"),
    ("it", "it"),
    ("it-IT", "it"),
    ("id", "id"),
    ("uk", "uk"),
    ("ms", "ms"),
    ("no", "nb"),
    ("nb-NO", "nb"),
    ("hi", "hi"),
    ("he", "he"),
)
ZOTERO_FIELDS: Mapping[str, Any] = {"temperature": 1.0, "stream": True}


def _zotero_parse(content: str) -> str:
    """The answer with one leading '\\n\\n' removed, nothing else (empty-line stripping is off by default)."""
    return re.sub(r"^\n\n", "", content)


# -- Subtitle Edit (SubtitleEdit/subtitleedit, auto-translate with ChatGPT / an OpenAI-compatible server) ------------
SE4_SOURCE = (
    "SubtitleEdit/subtitleedit@f2e4b539ab0876985f8a8d6d1dc744e1cd712686 (tag 4.0.16):"
    "src/libse/AutoTranslate/ChatGptTranslate.cs + src/libse/Settings/ToolsSettings.cs (ChatGptPrompt)"
    " + src/ui/Forms/Translate/MergeAndSplitHelper.cs + src/libse/SubtitleFormats/Json.cs (EncodeJsonText)"
)
SE5_SOURCE = (
    "SubtitleEdit/subtitleedit@38f1dd4bac6c70bdf1f2d1bb5952aa414c6cb777 (tag v5.1.0):"
    "src/ui/Logic/Config/SeAutoTranslate.cs (ChatGptPrompt, OpenAiCompatiblePrompt)"
    " + src/libse/AutoTranslate/OpenAiCompatibleTranslate.cs"
)
SE_CHATGPT_PROMPT = (
    "Translate from {from} to {to}, keep punctuation as input, do not censor the translation, give only the output"
    " without comments:\n\n{text}"
)
SE_COMPATIBLE_PROMPT = (
    "Translate from {from} to {to}, keep punctuation as input, keep line breaks exactly the same, do not censor the"
    " translation, give only the output without comments:\n\n{text}"
)
# The language list's display names are also the codes it passes ({0} / {1}).
SE_TARGETS: tuple[tuple[str, str], ...] = (
    ("Chinese (Simplified)", "zh"),
    ("Chinese (Traditional)", "zh-Hant"),
    ("English", "en"),
    ("Japanese", "ja"),
    ("Korean", "ko"),
    ("German", "de"),
    ("French", "fr"),
    ("Spanish", "es"),
    ("Italian", "it"),
    ("Portuguese", "pt"),
    ("Brazilian Portuguese", "pt"),
    ("Indonesian", "id"),
    ("Malay", "ms"),
    ("Ukrainian", "uk"),
    ("Norwegian", "nb"),
    ("Hindi", "hi"),
    ("Hebrew", "he"),
)
_SE_PREAMBLE = re.compile(r"^(Here is|Here's) [a-zA-Z ,]+:")
_SE_NOTE = (
    "Line breaks inside the text are sent as '<br />' (Json.EncodeJsonText), so several subtitle lines arrive as one"
    " line; only the prompt/text boundary is a real '\\n\\n'. No stream, no temperature. The answer is taken from the"
    ' first "content" key found anywhere in the response JSON (a string scan, not a JSON parse). MergeAndSplitHelper'
    " merges consecutive subtitles (sentence-wise, up to 1,500 characters) and splits the answer back by lines and"
    " sentence ends; a count that does not match makes it translate line by line."
)


def _se_join(lines: Sequence[str]) -> str:
    """Subtitle lines (each ending a sentence) joined by the line break, which goes on the wire as '<br />'."""
    return "<br />".join(line.replace("\n", "<br />") for line in lines).strip()


def _se_clean(content: str, sent: str) -> str:
    """ChatGptTranslate's post-processing of the answer content."""
    out = content.replace("<br />", "\n").replace("<br>", "\n").replace("<br/>", "\n").strip()
    if out.startswith('"') and out.endswith('"') and not sent.startswith('"'):
        out = out.strip('"').strip()
    out = out.replace("<br  />", "\n").replace("\n\n", "\n").strip()
    if ":" not in sent or "<think>" in out:
        start, end = out.find("<think>"), out.find("</think>")
        if 0 <= start < end:
            out = (out[:start] + out[end + len("</think>") :]).strip()
        out = _SE_PREAMBLE.sub("", out, count=1).strip() if _SE_PREAMBLE.match(out) else out
    out = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), out)
    return out.strip()


def _se_split(content: str, sent: Sequence[str]) -> list[str]:
    """The cleaned answer cut into lines: as many as were sent, or the client falls back to one line a request."""
    return _se_clean(content, _se_join(sent)).splitlines()


# -- llm-subtrans / PySubtrans (machinewrapped/llm-subtrans, the OpenAI provider) ------------------------------------
SUBTRANS_SOURCE = (
    "machinewrapped/llm-subtrans@7dc054cd2be2cd085b7d2aa2f2d8927c2f7e840b:PySubtrans/Instructions.py"
    " (default_instructions, default_user_prompt) + PySubtrans/TranslationPrompt.py + PySubtrans/Options.py"
    " (BuildUserPrompt) + PySubtrans/SubtitleTranslator.py + PySubtrans/Providers/Clients/ChatGPTClient.py"
    " + PySubtrans/TranslationParser.py"
)


def _subtrans_user(prompt: str) -> str:
    """The first batch's user message: BuildUserPrompt's target put in the user prompt, wrapped in the batch template
    with the first batch's context tags."""
    user_prompt = prompt.replace("[ to language]", " to {to}").replace("[ for movie]", "").strip()
    return SUBTRANS_PROMPT_TEMPLATE.format(
        context="<scene>Scene 1</scene>\n<batch>Scene 1 batch 1</batch>", prompt=user_prompt + "\n\n{text}\n"
    )


SUBTRANS_TARGETS: tuple[tuple[str, str], ...] = (
    ("English", "en"),
    ("Japanese", "ja"),
    ("Simplified Chinese", "zh"),
    ("Chinese", "zh"),
    ("Spanish", "es"),
    ("Brazilian Portuguese", "pt"),
)
_SUBTRANS_NOTE = (
    "The first batch of a file (target_language as the user typed it, default English; batches of 10-30 lines):"
    " '#N / Original> / Translation>' blocks with context tags before them; the answer must also carry <summary>"
    " and <scene> tags. Later batches add <history> and summaries; a retry sends the answer back as assistant with"
    " retry instructions. Temperature from the provider settings; not streamed unless enabled."
)
_SUBTRANS_ITEM = re.compile(r"#(\d+)\s*\n(?:Original>\s*\n.*?\n)?\s*Translation>[ \t]*\n?(.*?)(?=\n#\d|\Z)", re.DOTALL)
_SUBTRANS_TAGS = re.compile(r"<(summary|scene|terminology)>.*?</\1>", re.DOTALL)


def _subtrans_join(texts: Sequence[str]) -> str:
    return "\n\n".join(SUBTRANS_LINE_TEMPLATE.format(number=i, text=t) for i, t in enumerate(texts, 1)).strip()


def _subtrans_answer(translations: Sequence[str]) -> str:
    """The answer the instructions ask for: the tags, then a '#N / Translation>' block per line."""
    blocks = (f"#{i}\nTranslation>\n{t}" for i, t in enumerate(translations, 1))
    return "<summary>A batch.</summary>\n<scene>A scene.</scene>\n\n" + "\n\n".join(blocks)


def _subtrans_split(content: str, sent: Sequence[str]) -> list[str]:
    """Each '#N' block's text after 'Translation>', by number (the <summary>/<scene> tags it asked for are read
    apart); a number with no block comes back empty."""
    found = {int(m.group(1)): _SUBTRANS_TAGS.sub("", m.group(2)).strip() for m in _SUBTRANS_ITEM.finditer(content)}
    return [found.get(i, "") for i in range(1, len(sent) + 1)]


# -- Easydict (tisfeng/Easydict, the OpenAI and custom OpenAI services) ----------------------------------------------
EASYDICT_SOURCE = (
    "tisfeng/Easydict@db250b323f2a5acce772884d5d7cdc29ee01ad5a:Easydict/Swift/Service/OpenAI/StreamService+Prompt.swift"
    " (translationSystemPrompt, translationMessages, queryLanguageName) + objc/Service/Language/EZLanguageModel.m"
    " + Swift/Service/OpenAI/StreamService+UpdateResult.swift"
)
EASYDICT_TARGETS: tuple[tuple[str, str], ...] = (
    ("简体中文白话文", "zh"),
    ("繁体中文白话文", "zh-Hant"),
    ("English", "en"),
    ("Japanese", "ja"),
    ("Korean", "ko"),
    ("Italian", "it"),
    ("Portuguese", "pt"),
    ("Brazilian-Portuguese", "pt"),
    ("Indonesian", "id"),
    ("Malay", "ms"),
    ("Ukrainian", "uk"),
    ("Hindi", "hi"),
    ("Norwegian", "nb"),
    ("Hebrew", "he"),
)
_QUOTE_PAIRS = {
    '"': '"',
    "'": "'",
    "`": "`",
    "“": "”",
    "‘": "’",
    "«": "»",
    "‹": "›",
    "「": "」",
    "『": "』",
    "《": "》",
    "〈": "〉",
    "﹁": "﹂",
}


def _easydict_parse(content: str) -> str:
    """Trimmed; a trailing '</s>' dropped; one matching pair of quotes around the whole answer removed; trimmed.
    (<think> blocks are filtered too.)"""
    text = re.sub(r"<think>.*?</think>", "", content, flags=re.DOTALL).strip()
    if text.endswith("</s>"):
        text = text[: -len("</s>")].strip()
    if len(text) > 2 and _QUOTE_PAIRS.get(text[0]) == text[-1] and text[1] not in _QUOTE_PAIRS:
        text = text[1:-1]
    return text.strip()


# -- The tables -------------------------------------------------------------------------------------------------------
CLIENT_PROMPTS: tuple[ClientPrompt, ...] = (
    *IMMERSIVE_SINGLE,
    ClientPrompt(
        client="bilingual_book_maker 1.3.1",
        source=BBM_SOURCE,
        messages=(("system", ""), ("user", BBM_USER)),
        targets=BBM_TARGETS,
        parse=_as_sent,
        note="A single-line paragraph of plain prose. " + _BBM_NOTE,
    ),
    ClientPrompt(
        client="bilingual_book_maker 1.3.1",
        source=BBM_SOURCE + " (Base._structure_preamble)",
        messages=(("system", ""), ("user", _template(BBM_STRUCTURE_INSTRUCTION + "\n\n", {}) + BBM_USER)),
        targets=BBM_TARGETS,
        parse=_as_sent,
        note="A paragraph with a newline or inline markup (html tag, markdown link, code span, bold): the structure"
        " contract goes first. " + _BBM_NOTE,
    ),
    ClientPrompt(
        client="bilingual_book_maker 1.3.1",
        source=BBM_SOURCE + " (Base._marker_preamble)",
        messages=(
            ("system", ""),
            (
                "user",
                _template(BBM_MARKER_INSTRUCTION + "\n\n" + BBM_STRUCTURE_INSTRUCTION + "\n\n", {}) + BBM_USER,
            ),
        ),
        targets=BBM_TARGETS,
        parse=_as_sent,
        note="A paragraph carrying ⟦…⟧ placeholder markers: the marker contract, then the structure contract. "
        + _BBM_NOTE,
    ),
    ClientPrompt(
        client="openai-translator 0.4 (translate mode)",
        source=OT_SOURCE,
        messages=(
            ("user", OT_ROLE + "\n\nOnly reply the result and nothing else. Please translate to {to}:\n\n{text}"),
        ),
        targets=OT_TARGETS,
        parse=_as_sent,
        fields=OT_FIELDS,
        note="A sentence (more than one word). " + _OT_NOTE,
    ),
    ClientPrompt(
        client="openai-translator 0.4 (translate mode)",
        source=OT_SOURCE + " (LANG_CONFIGS['ko-banmal'].genCommandPrompt)",
        messages=(
            (
                "user",
                OT_ROLE + "\n\nOnly reply the result and nothing else. Translate from {from} to Korean banmal."
                " Please use 이다 and 다 endings. Never use formal or honorific endings. Return translated text"
                " only.:\n\n{text}",
            ),
        ),
        targets=(("ko-banmal", "ko"),),
        source_value="English",
        parse=_as_sent,
        fields=OT_FIELDS,
        task="rewrite",
        note="Target 'Korean banmal' (casual register): the source's English name fills {from}. " + _OT_NOTE,
    ),
    ClientPrompt(
        client="openai-translator 0.4 (translate mode)",
        source=OT_SOURCE + " (word mode, non-Chinese target; rendered with common-tags 1.8.2)",
        messages=(
            (
                "user",
                _template(OT_WORD_ROLE_JA, {})
                .replace("into Japanese", "into {to}")
                .replace("English-Japanese", "{from}-{to}")
                + "\n\nOnly reply the result and nothing else. I understand. Please give me the word.:\n\nThe word is:"
                " {text}",
            ),
        ),
        targets=(("Japanese", "ja"),),
        source_value="English",
        parse=_as_sent,
        fields=OT_FIELDS,
        task="dictionary",
        note="A single word (Intl.Segmenter): a dictionary entry is asked for, not a translation; <hiragana> is the"
        " Japanese target's phonetic notation. " + _OT_NOTE,
    ),
    ClientPrompt(
        client="openai-translator 0.4 (translate mode)",
        source=OT_SOURCE + " (word mode, Chinese target; rendered with common-tags 1.8.2)",
        messages=(
            (
                "user",
                _template(OT_WORD_ROLE_ZH, {})
                + "\n\nOnly reply the result and nothing else. 好的，我明白了，请给我这个单词。:\n\n单词是：{text}",
            ),
        ),
        targets=(("简体中文", "zh"),),
        parse=_as_sent,
        fields=OT_FIELDS,
        task="dictionary",
        target_named=False,
        note="A single word with a Chinese target: a Chinese dictionary prompt that never names the target. "
        + _OT_NOTE,
    ),
    ClientPrompt(
        client="pot 3.0.7 (OpenAI service)",
        source=POT_SOURCE,
        messages=(("system", POT_SYSTEM), ("user", 'Translate into {to}:\n"""\n{text}\n"""')),
        targets=POT_TARGETS,
        source_value="Auto",
        parse=_pot_parse,
        fields={"temperature": 0.1, "top_p": 0.99, "frequency_penalty": 0, "presence_penalty": 0, "stream": False},
        note="$to/$from/$text/$detect replaced in every message of the user's promptList (this is the default list);"
        " the text is trimmed first. Streaming (off by default) keeps delta.content concatenated and trimmed.",
    ),
    ClientPrompt(
        client="Ebook Translator (Calibre) 2.4.2 (ChatGPT engine)",
        source=CALIBRE_SOURCE,
        messages=(("system", CALIBRE_SYSTEM), ("user", "{text}")),
        targets=CALIBRE_TARGETS,
        source_value="English",
        fields=CALIBRE_FIELDS,
        note="The text alone is the user message; source and target are named only in the system prompt (which ends"
        " in a space). With 'Auto detect' as source, {from} is 'detected language'. The answer is trimmed"
        " (lib/translation.py).",
    ),
    ClientPrompt(
        client="Translate for Zotero 2.4.6 (ChatGPT / custom GPT engines)",
        source=ZOTERO_SOURCE,
        messages=(("user", ZOTERO_USER),),
        targets=ZOTERO_TARGETS,
        source_value="en-US",
        parse=_zotero_parse,
        fields=ZOTERO_FIELDS,
        note="One user message; the text sits between 🔤 markers; {from}/{to} are the plugin's language codes. An"
        " endpoint ending in /responses gets {model, input: <this text>, temperature, stream} instead.",
    ),
    ClientPrompt(
        client="Translate for Zotero 2.4.6 (ChatGPT / custom GPT engines)",
        source=ZOTERO_SOURCE + " (attachPaperContext on)",
        messages=(
            (
                "user",
                _template(
                    ZOTERO_PROMPT.replace(
                        "${sourceText}",
                        "Context from the academic paper:\nPaper Title: Attention Is All You Need\n\nPaper Abstract:"
                        " The dominant sequence transduction models are based on recurrent networks.\n\nText to"
                        " translate: ${sourceText}",
                        1,
                    ),
                    {"${langFrom}": "from", "${langTo}": "to", "${sourceText}": "text"},
                ),
            ),
        ),
        targets=ZOTERO_TARGETS,
        source_value="en-US",
        parse=_zotero_parse,
        fields=ZOTERO_FIELDS,
        note="With 'attach paper context' the item's title and abstract go inside the 🔤 markers before the text.",
    ),
    ClientPrompt(
        client="Easydict 2.21 (OpenAI / custom OpenAI services)",
        source=EASYDICT_SOURCE,
        messages=(
            ("system", EASYDICT_SYSTEM),
            *((role, _template(content, {})) for role, content in EASYDICT_FEW_SHOT),
            ("user", 'Translate the following {from} text into {to} text: """{text}"""'),
        ),
        targets=EASYDICT_TARGETS,
        source_value="English",
        parse=_easydict_parse,
        fields={"stream": True, "temperature": 0.3},
        note="A system prompt, thirteen few-shot user/assistant pairs (some user turns are a bare word with no"
        " instruction), then the request; an auto-detected source is named by the detected language.",
    ),
)

BATCH_PROMPTS: tuple[BatchPrompt, ...] = (
    *IMMERSIVE_BATCH,
    BatchPrompt(
        client="bilingual_book_maker 1.3.1",
        source=BBM_SOURCE + " (Base._build_batch_prompt, _extract_paragraphs)",
        messages=(
            (
                "system",
                _template(
                    f"Professional translator. Input has <n> segments separated by '{BBM_BATCH_DELIMITER}'. "
                    f"Output <n> translations with '{BBM_BATCH_DELIMITER}' between each.",
                    {"<n>": "n"},
                ),
            ),
            (
                "user",
                _template(
                    BBM_STRUCTURE_INSTRUCTION + "\n\n"
                    f"Translate the following <n> text segments to <to>. Separate each translation with"
                    f" '{BBM_BATCH_DELIMITER}'. Output EXACTLY <n> translations.\n\n",
                    {"<n>": "n", "<to>": "to"},
                )
                + BBM_USER,
            ),
        ),
        targets=BBM_TARGETS,
        join=_bbm_join,
        split=_bbm_split,
        answer=BBM_BATCH_DELIMITER.join,
        note="--accumulated_num groups paragraphs when the endpoint refuses structured output: texts trimmed and"
        " joined by '\\n\\n@@\\n\\n' into the usual template, batch instructions before it. " + _BBM_NOTE,
    ),
    BatchPrompt(
        client="Ebook Translator (Calibre) 2.4.2 (ChatGPT engine)",
        source=CALIBRE_SOURCE + " (merge translation)",
        messages=(("system", CALIBRE_SYSTEM + _template(CALIBRE_MERGE_SUFFIX, {})), ("user", "{text}")),
        targets=CALIBRE_TARGETS,
        join=_calibre_join,
        split=_calibre_split,
        answer="\n\n".join,
        source_value="English",
        fields=CALIBRE_FIELDS,
        note="'Merge to translate': paragraphs joined by blank lines (inline tags as {{id_N}} placeholders) up to the"
        " merge length; the answer is cut at blank lines.",
    ),
    BatchPrompt(
        client="Subtitle Edit 4.0.16 / 5.1 (ChatGPT engine)",
        source=SE4_SOURCE + "; the same prompt at " + SE5_SOURCE,
        messages=(("user", SE_CHATGPT_PROMPT),),
        targets=SE_TARGETS,
        join=_se_join,
        split=_se_split,
        answer="\n".join,
        source_value="English",
        note=_SE_NOTE,
    ),
    BatchPrompt(
        client="Subtitle Edit 5.1 (OpenAI-compatible engine)",
        source=SE5_SOURCE,
        messages=(("user", SE_COMPATIBLE_PROMPT),),
        targets=SE_TARGETS,
        join=_se_join,
        split=_se_split,
        answer="\n".join,
        source_value="English",
        note="The model field is left out when none is set. " + _SE_NOTE,
    ),
    BatchPrompt(
        client="llm-subtrans 1.6 (OpenAI provider)",
        source=SUBTRANS_SOURCE + " + instructions/instructions.txt (the CLI's and GUI's default instruction file)",
        messages=(("system", SUBTRANS_FILE_INSTRUCTIONS), ("user", _subtrans_user(SUBTRANS_FILE_PROMPT))),
        targets=SUBTRANS_TARGETS,
        join=_subtrans_join,
        split=_subtrans_split,
        answer=_subtrans_answer,
        task="rewrite",
        note=_SUBTRANS_NOTE,
    ),
    BatchPrompt(
        client="PySubtrans 1.6 (library defaults, no instruction file)",
        source=SUBTRANS_SOURCE,
        messages=(("system", SUBTRANS_INSTRUCTIONS), ("user", _subtrans_user(SUBTRANS_USER_PROMPT))),
        targets=SUBTRANS_TARGETS,
        join=_subtrans_join,
        split=_subtrans_split,
        answer=_subtrans_answer,
        task="rewrite",
        note="Note the two spaces in 'subtitles  to' (the template's '[ for movie]' comes out empty). "
        + _SUBTRANS_NOTE,
    ),
)

CLIENT_PROBES: tuple[ClientPrompt, ...] = (
    ClientPrompt(
        client="bilingual_book_maker 1.3.1",
        source=BBM_SOURCE + " (capabilities.py ROUTE_PROBE_PROMPT, probe_model_route)",
        messages=(("user", BBM_ROUTE_PROBE),),
        targets=(),
        parse=_as_sent,
        task="probe",
        note="Sent once per model before the book: is the model served? The answer is not read.",
    ),
    ClientPrompt(
        client="bilingual_book_maker 1.3.1",
        source=BBM_SOURCE + " (capabilities.py PROBE_PROMPT, STRUCTURED_PROBE_SCHEMA, probe_structured_output)",
        messages=(("user", BBM_SCHEMA_PROBE),),
        targets=(),
        parse=_as_sent,
        fields={
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "structured_output_probe",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"probe": {"type": "string", "enum": ["schema_ok"]}},
                        "required": ["probe"],
                        "additionalProperties": False,
                    },
                },
            }
        },
        task="probe",
        note='Does the endpoint honour a strict schema? {"probe": "schema_ok"} back turns on the JSON forms;'
        " plain text back (or a refusal) keeps the plain forms above.",
    ),
)
