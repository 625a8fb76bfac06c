"""A deterministic pseudo-translation: each word becomes a common word of the target language, in its script.

What a language identifier reads is the target language (Han for zh, kana for ja, Cyrillic for ru,
pseudo-German for de, ...), while everything a real model must leave alone comes back byte for
byte: placeholders ({0}, {name}, {{x}}, %s, %(x)s, ${x}), tags and their attributes (<b0></b0>,
<a href="...">), entities, URLs, e-mail addresses, inline code, numbers, punctuation, spacing,
newlines, the plugin's %% separators and its YAML item heads. The same text always gets the same
answer, so repeats answer alike (as a cache expects) and tests can rely on the output.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zlib
from dataclasses import dataclass, field

from translane.languages import NAMES, normalize_language

__all__ = ["VOCABULARY", "Vocabulary", "mark", "pseudo_text", "vocabulary_for"]

# Common words per language, chosen for what tells the language apart from its neighbours (Danish
# "meget"/"efter" against Norwegian "veldig"/"etter", Ukrainian і/ї/є against Russian ы/э, ...).
VOCABULARY: dict[str, tuple[str, ...]] = {
    lang: tuple(words.split("|"))
    for lang, words in {
        "en": "the|and|is|not|also|because|but|now|they|with|for|this|still|city|very|today|house|we|have|where|"
        "already|always|between|thank you|would|which|their|about|night|light",
        "de": "der|die|das|und|ist|nicht|auch|weil|aber|jetzt|sind|eine|mit|für|diese|noch|Stadt|schön|über|sehr|"
        "heute|Haus|wir|haben|werden|können|zwischen|würde|Straße|immer|Nacht|gemütlich",
        "fr": "le|la|les|et|est|pas|aussi|parce que|mais|maintenant|sont|une|avec|pour|cette|encore|ville|très|"
        "aujourd'hui|maison|nous|avons|être|où|déjà|beaucoup|toujours|entre|leur|château|nuit|peut-être",
        "es": "el|la|los|las|y|es|no|también|porque|pero|ahora|son|una|con|para|esta|todavía|ciudad|muy|hoy|casa|"
        "nosotros|tenemos|ser|dónde|ya|mucho|siempre|entre|señor|niño|noche",
        "it": "il|lo|gli|e|è|non|anche|perché|ma|adesso|sono|una|con|per|questa|ancora|città|molto|oggi|casa|noi|"
        "abbiamo|essere|dove|già|sempre|tra|della|degli|notte|giorno|così",
        "pt": "o|os|e|é|não|também|porque|mas|agora|são|uma|com|para|esta|ainda|cidade|muito|hoje|casa|nós|temos|"
        "ser|onde|já|sempre|entre|você|então|coração|noite|irmão|ção",
        "nl": "de|het|een|en|is|niet|ook|omdat|maar|nu|zijn|met|voor|deze|nog|stad|heel|vandaag|huis|wij|hebben|"
        "worden|waar|al|altijd|tussen|gezellig|zeggen|gewoon|nacht|jullie|eigenlijk",
        "pl": "i|w|nie|na|jest|się|że|także|ponieważ|ale|teraz|są|z|dla|który|jeszcze|miasto|bardzo|dzisiaj|dom|"
        "my|mamy|być|gdzie|już|zawsze|między|dziękuję|źródło|noc|wszystko|często",
        "sv": "och|i|inte|på|är|att|jag|det|som|för|med|också|eftersom|men|nu|en|denna|fortfarande|stad|mycket|"
        "idag|hus|vi|har|vara|redan|alltid|mellan|tack|kväll|någon|själv",
        "da": "af|efter|nu|meget|stadig|hvad|nogle|altid|mellem|tak|aften|blev|lidt|mig|dig|sig|kun|gade|øjeblik|"
        "spørgsmål|sådan|pige|dreng|ikke|og|hvorfor|derfor|måske|hjem|sammen|købe|bøger",
        "nb": "av|etter|nå|veldig|fortsatt|hva|noen|alltid|mellom|takk|kveld|ble|litt|meg|deg|seg|bare|gate|øyeblikk|"
        "spørsmål|sånn|jente|gutt|ikke|og|hvorfor|kanskje|hjemme|sammen|kjøpe|bøker|hvordan",
        "fi": "ja|on|ei|se|että|hän|myös|koska|mutta|nyt|ovat|yksi|kanssa|tämä|vielä|kaupunki|hyvin|tänään|talo|"
        "me|meillä|olla|missä|jo|aina|välillä|kiitos|ilta|kävellä|yö|kirja|hyvää",
        "cs": "protože|řeka|děkuji|všechno|také|ještě|město|člověk|dobře|můžeme|hezký|přítel|když|není|jsem|jsou|"
        "který|velmi|dnes|tady|něco|práce|země|škola|kniha|večer|říkat|třeba|proč|teď|že|být|a|na|je|to|se",
        "sk": "pretože|rieka|ďakujem|všetko|tiež|ešte|mesto|človek|dobre|môžeme|pekný|priateľ|keď|nie je|som|sú|"
        "ktorý|veľmi|dnes|tu|niečo|práca|zem|škola|kniha|večer|hovoriť|ľudia|väčšina|prečo|teraz|že|a|na|je|to|sa",
        "sl": "ker|tudi|zdaj|hvala|hiša|zelo|danes|vedno|lahko|morje|človek|dober|prijatelj|kaj|kje|ampak|nekaj|"
        "delo|zemlja|šola|knjiga|noč|zvečer|govoriti|ljudje|svet|ki|še|so|bili|moramo|čeprav",
        "hr": "također|tko|što|tisuća|kruh|sveučilište|kazalište|zrakoplov|tjedan|točno|uvijek|gdje|lijepo|"
        "vrijeme|mlijeko|rijeka|djeca|hvala|prijatelj|kuća|jer|ali|sada|danas|vrlo|grad|posao|knjiga|"
        "večer|noć|glazba|kolodvor",
        "ro": "și|că|pentru|această|foarte|astăzi|împreună|mulțumesc|oraș|țară|noapte|întotdeauna|despre|după|"
        "până|deoarece|frumos|prieten|lucru|timp|carte|seară|vorbi|oameni|ceva|unde|acum|sunt|este|nu|"
        "dumneavoastră|învățătură",
        "tr": "ve|bir|değil|çok|için|ama|şimdi|bu|ile|şehir|teşekkür|ederim|güzel|gibi|daha|bugün|ev|biz|var|"
        "olmak|nerede|zaten|her zaman|arasında|öğrenci|ağaç|gece|böyle",
        "hu": "és|egy|nem|nagyon|mert|de|most|ez|vagyok|város|köszönöm|szép|hogy|még|ma|ház|mi|van|lenni|hol|"
        "már|mindig|között|által|előtt|éjszaka|könyv|után",
        "id": "karena|bisa|uang|kantor|saja|kamu|Anda|sampai|pemerintah|mobil|sepeda|berbicara|telepon|rumah sakit|"
        "kemarin|mengerti|gratis|kamar|baru|ingin|nggak|banget|adalah|dan|tetapi|apotek|sekolah|bagus|sih|"
        "dong|jalan|kita",
        "ms": "kerana|boleh|wang|pejabat|kerajaan|sahaja|awak|anda|sehingga|daripada|kereta|basikal|bercakap|"
        "telefon|hospital|faham|percuma|bilik|baharu|mahu|beliau|iaitu|ialah|sentiasa|sebab|dan|tetapi|lagi|"
        "jalan|kita|sekolah|bagus",
        "vi": "và|là|không|rất|của|những|người|được|cho|này|thành phố|cảm ơn|đẹp|với|một|chúng tôi|hôm nay|nhà|"
        "thời gian|nhưng|bây giờ|đã|có|ở|đêm|sách",
        "lt": "ir|į|ne|ant|yra|kad|taip pat|nes|bet|dabar|jie|su|už|šis|dar|miestas|labai|šiandien|namas|mes|"
        "turime|būti|kur|jau|visada|tarp|ačiū|naktis",
        "lv": "un|nav|ir|arī|bet|tagad|viņi|pilsēta|ļoti|šodien|māja|mēs|mums|būt|vienmēr|starp|paldies|nakts|"
        "grāmata|draugs|cilvēki|darbs|vakarā|runāt|kāpēc|tāpēc|jūra|skola",
        "et": "ja|on|ei|see|et|ta|ka|sest|aga|nüüd|nad|koos|jaoks|veel|linn|väga|täna|maja|meie|meil|olla|kus|"
        "juba|alati|vahel|aitäh|öö|raamat",
        "ca": "és|també|perquè|però|ara|són|amb|aquesta|encara|ciutat|molt|avui|nosaltres|tenim|sempre|entre|"
        "gràcies|això|nit|què|fins|després|doncs|aquell|treball|llibre|vosaltres|mateix|llengua|ells",
        "sw": "kwa sababu|lakini|sasa|pamoja|nyumba|asante|tafadhali|rafiki|habari|kitabu|usiku|mtoto|watu|"
        "chakula|kazi|shule|mji|kubwa|ndiyo|hapana|kesho|jana|leo|vizuri|sana|hii|wao|tayari|daima|kati",
        "fil": "ang|ng|mga|at|sa|ay|hindi|na|rin|dahil|pero|ngayon|sila|kasama|para|ito|pa|lungsod|napaka|bahay|"
        "kami|mayroon|kung saan|palagi|salamat|gabi|aklat|po",
        # Cyrillic.
        "ru": "и|в|не|на|я|что|он|с|как|это|по|но|они|мы|все|она|так|его|только|было|уже|для|вот|был|когда|"
        "очень|сегодня|дом|город|время|человек|хорошо|ещё|этот|мы",
        "uk": "і|в|не|на|я|що|він|з|як|це|по|але|вони|ми|всі|вона|так|його|тільки|було|вже|для|ось|був|коли|"
        "дуже|сьогодні|дім|місто|час|людина|добре|ще|їх|є",
        "bg": "и|в|не|на|аз|че|той|с|като|това|по|но|те|ние|всички|тя|така|него|само|беше|вече|за|ето|когато|"
        "много|днес|къща|град|време|човек|добре|още|съм|във",
        "sr": "и|у|не|на|ја|да|он|са|као|то|по|али|они|ми|сви|она|тако|њега|само|било|већ|за|ево|био|када|"
        "веома|данас|кућа|град|време|човек|добро|још|шта|није|ћу|љубав",
        "mn": "би|чи|бид|энэ|тэр|байна|өдөр|хүн|сайн|их|үгүй|гэр|хот|цаг|ном|болон|гэж|бол|байсан|өөр|шөнө|"
        "манай|маш|баярлалаа",
        "kk": "мен|сен|біз|бұл|ол|бар|жоқ|күн|адам|жақсы|үлкен|қала|уақыт|кітап|және|өте|үшін|деп|болды|"
        "түн|рахмет|қазір",
        # Other alphabets and abjads.
        "el": "και|το|η|ο|να|είναι|δεν|με|για|από|στο|την|τα|που|θα|αυτό|σήμερα|σπίτι|πόλη|χρόνος|πολύ|"
        "ευχαριστώ|βιβλίο|αλλά|νύχτα|τώρα",
        "ar": "في|من|على|إلى|أن|هذا|هذه|كان|التي|الذي|مع|عن|لا|ما|هو|هي|كل|بعد|قبل|اليوم|البيت|المدينة|"
        "الوقت|جدا|شكرا|كتاب|الليل",
        "fa": "و|در|به|از|که|این|را|با|است|برای|آن|یک|خود|تا|کرد|بر|هم|نیز|ما|شما|او|امروز|خانه|شهر|زمان|"
        "خیلی|ممنون|کتاب|گفت|چه|پیش|می‌شود",
        "ur": "اور|میں|کے|کی|کا|ہے|یہ|وہ|سے|کو|نہیں|تھا|ہیں|کر|گیا|ایک|ہم|آپ|آج|گھر|شہر|وقت|بہت|شکریہ|"
        "کتاب|لیکن|ہوں|رات",
        "he": "של|את|על|זה|לא|הוא|היא|אני|אנחנו|הם|עם|כל|גם|יש|אין|היום|בית|עיר|זמן|מאוד|תודה|ספר|אבל|כי|מה|לילה",
        "hi": "और|का|की|के|है|में|यह|वह|से|को|नहीं|था|हैं|कर|गया|एक|हम|आप|आज|घर|शहर|समय|बहुत|धन्यवाद|किताब|लेकिन|रात",
        "bn": "এবং|এর|একটি|হয়|না|এই|সে|থেকে|কে|আমি|আমরা|আপনি|আজ|বাড়ি|শহর|সময়|খুব|ধন্যবাদ|বই|কিন্তু|রাত|করে",
        "ta": "மற்றும்|ஒரு|இது|அது|இல்லை|நான்|நாம்|நீங்கள்|இன்று|வீடு|நகரம்|நேரம்|மிகவும்|நன்றி|புத்தகம்|ஆனால்|என்று|இரவு",
        "ko": "그리고|하지만|우리|사람|오늘|시간|친구|학교|집|있다|없다|합니다|입니다|그것|이것|정말|좋은|많이|"
        "함께|바다|등대|밤|아침|책|도시|감사합니다",
        # Written without spaces between words.
        "zh": "我们|的|是|不|了|在|人|有|他|这|中|大|来|上|国|个|到|说|们|为|和|你|地|也|时|年|可以|没有|"
        "因为|所以|这个|现在|时候|什么|已经|知道|工作|问题|学习|朋友|今天|城市|晚上|书",
        "zh-Hant": "我們|的|是|不|了|在|人|有|他|這|中|大|來|上|國|個|到|說|們|為|和|你|地|也|時|年|可以|沒有|"
        "因為|所以|這個|現在|時候|什麼|已經|知道|工作|問題|學習|朋友|今天|城市|晚上|書",
        "ja": "これ|それ|の|は|が|を|に|で|と|も|から|まで|です|ます|ました|私|日本|今日|時間|友達|学校|言葉|"
        "ありがとう|そして|しかし|とても|いい|見る|行く|来る|夜|本",
        "th": "ที่|และ|ของ|ใน|เป็น|ไม่|มี|ได้|ว่า|การ|จะ|ให้|นี้|กับ|คน|วันนี้|บ้าน|เมือง|เวลา|มาก|ขอบคุณ|หนังสือ|แต่|เรา|กลางคืน",
        "km": "និង|ជា|នៅ|ក្នុង|មាន|ទេ|ខ្ញុំ|យើង|ថ្ងៃនេះ|ផ្ទះ|ទីក្រុង|ពេល|ណាស់|អរគុណ|សៀវភៅ",
        "lo": "ແລະ|ແມ່ນ|ຢູ່|ໃນ|ມີ|ບໍ່|ຂ້ອຍ|ພວກເຮົາ|ມື້ນີ້|ເຮືອນ|ເມືອງ|ເວລາ|ຫຼາຍ|ຂອບໃຈ|ປື້ມ",
        "my": "နှင့်|သည်|တွင်|ရှိ|ကျွန်ုပ်|ကျွန်ုပ်တို့|ယနေ့|အိမ်|မြို့|အချိန်|အလွန်|ကျေးဇူး|စာအုပ်",
    }.items()
}
# Languages whose words follow one another without a space.
_UNSPACED = frozenset({"zh", "zh-Hant", "ja", "th", "km", "lo", "my"})
_NAMES = {name.casefold(): code for code, name in NAMES.items()} | {
    "chinese": "zh",
    "norwegian": "nb",
    "tagalog": "fil",
    "farsi": "fa",
}


def _marks() -> str:
    """A regex class body of every combining mark (accents written apart, Indic vowel signs, Thai tones)."""
    ranges: list[str] = []
    start = prev = -2
    for code in range(0x300, 0x10000):  # the Basic Multilingual Plane: where living scripts' marks are
        if not unicodedata.category(chr(code)).startswith("M"):
            continue
        if code != prev + 1:
            if start >= 0:
                ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
            start = code
        prev = code
    ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
    return "".join(ranges)


# What the answer keeps byte for byte, wherever it stands.
_MARKUP = (
    r"`[^`\n]*`"  # inline code
    r"|<[A-Za-z/!?][^<>]*>"  # tags with their attributes (<b0>, <a href="...">, </i>), comments, <?xml?>
    r"|&(?:#\d+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);"  # entities
    r"|\{\{[^{}]*\}\}|\$?\{[^{}\s]*\}"  # {{x}}, {0}, {name}, ${x}
    r"|%(?:\([^()]*\))?[-#0+]*(?:\d+|\*)?(?:\.\d+)?[sdiouxXeEfFgGcraq%]"  # %s, %(x)s, %5.2f, %%
    r"|^-[ \t]+id:[^\n]*\n[ \t]+[A-Za-z_][\w-]*:"  # the plugin's YAML item head: "- id: 3\n  text:"
)
_ADDRESSES = (
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"']+|www\.[^\s<>\"']+"  # URLs
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
)
# Cheap first looks (plain substring tests), so the common text is not searched for what it cannot hold.
_MARKUP_HINTS = ("`", "<", "&", "{", "%", "id:")
_ADDRESS_HINTS = ("@", "://", "www.")
# A word: one or two Han/kana characters (those scripts put no spaces between words), or letters with
# their combining marks and inner apostrophes (aujourd'hui, नमस्ते).
_CJK = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,2}"
_WORD = rf"{_CJK}|[^\W\d_]+(?:(?:[{_marks()}]+|['’](?=[^\W\d_]))[^\W\d_]*)*"


def _tokens(*keep: str) -> re.Pattern[str]:
    """Splits a text into (what lies between, a run to keep, a word) triples, by re.split's groups."""
    return re.compile(rf"({'|'.join(keep) or '(?!)'})|({_WORD})", re.MULTILINE)


# By (may hold markup, may hold an address): a text is not searched for what it cannot hold.
_TOKENS = {
    (False, False): _tokens(),
    (True, False): _tokens(_MARKUP),
    (False, True): _tokens(_ADDRESSES),
    (True, True): _tokens(_MARKUP, _ADDRESSES),
}


# Checksums of words seen, so the common ones are not encoded and summed on every call (bounded: the words of
# a benchmark's generated sentences never stop coming).
_SUMS: dict[str, int] = {}
_SUMS_KEPT = 50_000


def _checksum(word: str) -> int:
    found = _SUMS.get(word)
    if found is None:
        found = zlib.crc32(word.casefold().encode())
        if len(_SUMS) < _SUMS_KEPT:
            _SUMS[word] = found
    return found


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """One target language's words, and how they are joined."""

    code: str
    words: tuple[str, ...]
    # Written without spaces between words (Chinese, Japanese, Thai, ...).
    unspaced: bool
    # The words capitalised, for a word that was.
    capitalised: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capitalised", tuple(w[:1].upper() + w[1:] for w in self.words))

    def translate(self, text: str) -> str:
        """`text` with each word replaced by one of ours; what must survive kept byte for byte."""
        markup = any(hint in text for hint in _MARKUP_HINTS)
        parts = _TOKENS[markup, any(hint in text for hint in _ADDRESS_HINTS)].split(text)
        words, capitalised, unspaced = self.words, self.capitalised, self.unspaced
        out: list[str] = []
        after_word = False
        position = 0
        for k in range(0, len(parts) - 1, 3):
            between, kept, source = parts[k], parts[k + 1], parts[k + 2]
            if source is None:
                out += (between, kept)
                after_word = False
                continue
            if after_word:
                # Between two words: one space goes in an unspaced language; words that touched (Han
                # characters, say) are spaced apart in a spaced one.
                if unspaced and between == " ":
                    between = ""
                elif not unspaced and not between:
                    between = " "
            # Chosen by a checksum of the word and its place, so the words of a text spread over the whole
            # vocabulary (not "the" always the same one, which would fill every answer with it).
            choice = (_checksum(source) + position) % len(words)
            out += (between, capitalised[choice] if source[0].isupper() else words[choice])
            position += 1
            after_word = True
        out.append(parts[-1])
        return "".join(out)


@functools.lru_cache(maxsize=256)
def vocabulary_for(target: str) -> Vocabulary | None:
    """The vocabulary of a target as clients name it ("zh-TW", "pt-BR", "German"), or None."""
    code = normalize_language(target)
    if code not in VOCABULARY:
        code = _NAMES.get(target.strip().casefold(), code)
    words = VOCABULARY.get(code)
    return None if words is None else Vocabulary(code, words, code in _UNSPACED)


def pseudo_text(text: str, target: str) -> str:
    """`text` with each word replaced by a word of `target`; placeholders, markup, numbers, punctuation and
    spacing kept. A target without a vocabulary gets the text as it came."""
    vocabulary = vocabulary_for(target)
    return text if vocabulary is None else vocabulary.translate(text)


# Where a paragraph of the plugin's multi-paragraph forms starts: after a YAML item head or a %% line.
_PARAGRAPH = re.compile(r"^-[ \t]+id:[^\n]*\n[ \t]+[A-Za-z_][\w-]*:[ \t]*|\n[ \t]*%%[ \t]*\n\s*", re.MULTILINE)


def mark(text: str, marker: str) -> str:
    """`text` with `marker` in front, or in front of each paragraph when it holds the plugin's YAML items or
    %% separators, so a reader sees every one is simulated and the form still parses."""
    if "%%" not in text and "id:" not in text:
        return marker + text
    head = _PARAGRAPH.match(text)
    out = [] if head is not None and head.group().startswith("-") else [marker]
    pos = 0
    for m in _PARAGRAPH.finditer(text):
        out += (text[pos : m.end()], marker)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)
