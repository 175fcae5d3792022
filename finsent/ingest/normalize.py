"""A `RawStory` as found -> a clean `NewsItem`: canonical URL, plain text, a UTC publish time,
a language and the tickers it is about.

Everything here is a pure function of its arguments: the caller passes ``fetched_at`` and
``now``, so replays and tests are deterministic and no function reads the wall clock.
"""

from __future__ import annotations

import email.utils
import html
import re
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from itertools import islice
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from finsent.core.records import MAX_NAME_CHARS, NewsItem, stable_id, utc
from finsent.core.watchlist import NO_WATCHLIST, Watchlist
from finsent.ingest.raw import RawStory
from finsent.ingest.tickers import MAX_TICKERS, normalize_symbol, tag_entities

__all__ = [
    "TRACKING_PARAMS",
    "NormalizeError",
    "canonical_url",
    "clean_text",
    "guess_language",
    "normalize",
    "parse_published",
]


class NormalizeError(ValueError):
    """A story that cannot become a `NewsItem`; ``reason`` is what the dead letter records."""

    def __init__(self, reason: str, source: str = "") -> None:
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason
        self.source = source


# --- URLs -------------------------------------------------------------------------------------

# Query parameters that say how a reader arrived, not which story it is. Any "utm_*" goes too.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "gclsrc",
        "dclid",
        "msclkid",  # Microsoft Ads
        "yclid",  # Yandex
        "twclid",  # X/Twitter
        "igshid",  # Instagram
        "mc_cid",  # Mailchimp
        "mc_eid",
        "_hsenc",  # HubSpot
        "_hsmi",
        "mkt_tok",  # Marketo
        "cmpid",  # campaign ids (CNBC, Reuters, ...)
        "ref",
        "ref_src",
        "ref_url",
        "src",
        "smid",  # NYT share links
        "soc_src",
        "soc_trk",
        "guccounter",  # Yahoo consent redirect
        "guce_referrer",
        "guce_referrer_sig",
        "ncid",  # Yahoo/AOL feeds
        "sr_share",
        "taid",
        "yptr",
        "ocid",  # MSN
        "at_medium",  # AT Internet
        "at_campaign",
    }
)
# "mod" carries page placement on Dow Jones sites ("mod=rss_markets_main", "mod=hp_lead_pos1")
# but is a real parameter elsewhere: dropped only when its value starts like placement.
_TRACKING_MOD = re.compile(
    r"^(?:rss|hp|djem|e2|mhp|article_inline|lead|itp|wsj|mktw|searchresults|trending|pls|"
    r"newsreel|nl_|ntf|home|mw_)",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-.]*[a-z0-9_])?$")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


def _is_tracking(key: str, value: str) -> bool:
    key = key.lower()
    if key.startswith("utm_") or key in TRACKING_PARAMS:
        return True
    return key == "mod" and bool(_TRACKING_MOD.match(value))


def _normalize_escapes(path: str) -> str:
    """Upper-case percent-escapes, decode the unreserved ones, escape what may not appear raw."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    path = _PCT.sub(fix, path)
    # A "%" that does not start an escape is itself escaped.
    path = re.sub(r"%(?![0-9A-F]{2})", "%25", path)
    return quote(path, safe=_PATH_SAFE)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path: "/a/./b/../c" -> "/a/c"."""
    segments = path.split("/")[1:]
    if "." not in segments and ".." not in segments:
        return path
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    return "/" + "/".join(kept)


def canonical_url(url: str) -> str:
    """The one spelling of a story's URL: http(s) only, lower-case scheme and host, no default
    port, credentials, fragment or tracking parameters, sorted query, dot segments resolved, no
    trailing slash except the root. Anything else (empty, relative, other schemes, a malformed
    host) gives "". Idempotent."""
    url = url.strip()
    if not url:
        return ""
    if not url.isascii():
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no URL has one
            return ""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return ""
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:  # a bad port or an unbalanced "[" in the host
        return ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return ""
    if ":" in host:  # an IPv6 literal
        if not re.fullmatch(r"[0-9a-f:.]+", host):
            return ""
        host = f"[{host}]"
    elif not _HOST.match(host):
        return ""
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"

    path = _remove_dot_segments(_normalize_escapes(parts.path))
    path = path.rstrip("/") or "/"

    pairs = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(key, value)
    ]
    query = urlencode(sorted(pairs), quote_via=quote, safe="")
    return urlunsplit((scheme, netloc, path, query, ""))


# --- text -------------------------------------------------------------------------------------

_SKIP_CONTENT = frozenset({"script", "style"})
# Tags that separate words when rendered: replaced by a space so "a<br>b" is not "ab".
_BREAKING = frozenset(
    {"br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "table", "hr", "blockquote", "pre"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer", "dd", "dt"}
)
# C0/C1 controls become spaces (folded later); invisible format characters and lone surrogates
# (from surrogate-escaped bytes, which cannot be encoded as UTF-8) are dropped.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u00ad\u200b\u2060\ufeff\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNESCAPE_ROUNDS = 3


_TAG_NAME = re.compile(r"[a-zA-Z][^\t\n\r\f />\x00]*")
# The rest of a tag up to its ">", quoted values honoured. Possessive: never backtracks, and it
# is only ever run up to the next "<", so each character is read a bounded number of times.
_TAG_REST = re.compile(r"""(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")


class _Finder:
    """``find`` of one needle (a string or a pattern) for positions that only move forward:
    an answer is reused until it is passed, and "none after p" holds for every later p, so
    all the searches over one text cost one pass."""

    def __init__(self, text: str, needle: str | re.Pattern[str]) -> None:
        self.text = text
        self.needle = needle
        self._from = -1
        self._at = -1

    def find(self, pos: int) -> int:
        if self._from >= 0 and self._from <= pos and (self._at < 0 or self._at >= pos):
            return self._at
        if isinstance(self.needle, str):
            at = self.text.find(self.needle, pos)
        else:
            match = self.needle.search(self.text, pos)
            at = match.start() if match else -1
        self._from, self._at = pos, at
        return at


_CLOSERS = {
    name: re.compile(rf"</{name}(?=[\t\n\r\f />])", re.IGNORECASE) for name in _SKIP_CONTENT
}


def _strip_markup(text: str) -> str:
    """Text with tags, comments and declarations removed and entities unescaped, in one pass.

    Reads well-formed markup as ``html.parser`` does (script and style dropped with their
    content, breaking tags as a space), but in linear time: a tag must end before the next
    "<", and a "<" that starts nothing complete is text. (``html.parser`` rescans the rest of
    the document for every unterminated "<", which is quadratic.)
    """
    out: list[str] = []
    n = len(text)
    finders: dict[str, _Finder] = {}

    def finder(key: str, needle: str | re.Pattern[str]) -> _Finder:
        if key not in finders:
            finders[key] = _Finder(text, needle)
        return finders[key]

    i = 0
    while i < n:
        lt = finder("<", "<").find(i)
        if lt < 0:
            out.append(html.unescape(text[i:]))
            break
        if lt > i:
            out.append(html.unescape(text[i:lt]))
        bound = finder("<", "<").find(lt + 1)
        bound = n if bound < 0 else bound  # a tag ends before the next "<"
        end = -1  # where the construct at lt ends (exclusive); -1: the "<" is text
        if text.startswith("<!--", lt):
            close = finder("-->", "-->").find(lt + 4)
            end = close + 3 if close >= 0 else -1
        elif text.startswith("<![CDATA[", lt):
            close = finder("]]>", "]]>").find(lt + 9)
            end = close + 3 if close >= 0 else -1
        elif text.startswith(("<!", "<?", "</"), lt):
            close = finder(">", ">").find(lt + 2)
            if 0 <= close < bound:
                end = close + 1
                name = _TAG_NAME.match(text, lt + 2, close) if text[lt + 1] == "/" else None
                if name and name.group().lower() in _BREAKING:
                    out.append(" ")
        else:
            name = _TAG_NAME.match(text, lt + 1, bound)
            rest = _TAG_REST.match(text, name.end(), bound) if name else None
            if name and rest:
                end = rest.end()
                tag = name.group().lower()
                if tag in _SKIP_CONTENT and not text.startswith("/>", end - 2):
                    closer = finder(tag, _CLOSERS[tag]).find(end)
                    if closer < 0:
                        break  # an unclosed script runs to the end: all of it is dropped
                    after = finder(">", ">").find(closer)
                    end = n if after < 0 else after + 1
                elif tag in _BREAKING:
                    out.append(" ")
        if end < 0:
            out.append("<")
            i = lt + 1
        else:
            i = end
    return "".join(out)


def _clean_once(text: str) -> str:
    if "<" in text or "&" in text:  # plain text has nothing to strip: skip it
        text = _strip_markup(text)
    text = _INVISIBLE.sub("", _CONTROLS.sub(" ", text))
    return " ".join(text.split())


def clean_text(text: str) -> str:
    """Plain text from a feed's HTML-ish field: tags stripped (script and style with their
    content), entities unescaped, controls removed, whitespace folded. Idempotent.

    Double-escaped feeds ("&amp;amp;" or "&lt;b&gt;") need several rounds: up to three, and
    the result is a fixed point. Text still changing after that (escaped four times or more)
    has its remaining "&" and "<" replaced by their full-width forms so that it stays one; so
    has the "<" of anything left that a browser would read as a tag.
    """
    for _ in range(_UNESCAPE_ROUNDS):
        cleaned = _clean_once(text)
        if cleaned == text:
            break
        text = cleaned
    else:
        if _clean_once(text) != text:
            text = text.replace("&", "\uff06").replace("<", "\uff1c")
    # What the parser took for text but a browser would take for a tag ("&lt;A<p>&quot;&gt;"
    # unescapes to '<A ">'): its "<" in full width, so no markup leaves this function.
    return _TAG_LIKE.sub("\uff1c", text)


_TAG_LIKE = re.compile(r"<(?=[A-Za-z/!?][^<>]*>)")


# Raw text is cut to this many times its field's limit before cleaning: markup may shrink it
# that much, and no more of a hostile field is worth reading.
_RAW_FACTOR = 8


def _clean_field(text: object, limit: int) -> str:
    return _truncate(clean_text(str(text or "")[: limit * _RAW_FACTOR]), limit)


def _truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary when one is near, ending in "…"."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


# --- times ------------------------------------------------------------------------------------

# Zone names to UTC offsets in hours. `email.utils` resolves the first group itself; the
# others are stripped and applied here (and all of them are passed to dateutil).
_EMAIL_ZONES: dict[str, float] = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "AST": -4, "ADT": -3, "EST": -5, "EDT": -4,
    "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}  # fmt: skip
_OTHER_ZONES: dict[str, float] = {
    "BST": 1, "CET": 1, "CEST": 2, "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "WET": 0,
    "WEST": 1, "MSK": 3, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8, "AWST": 8, "ACST": 9.5,
    "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "HST": -10, "AKST": -9, "AKDT": -8,
}  # fmt: skip
# Generic US names ("10:16 PM ET") follow daylight saving through tzdata, or fall back to the
# standard offset where the system has no tzdata.
_GENERIC_ZONES: dict[str, tuple[str, float]] = {
    "ET": ("America/New_York", -5),
    "CT": ("America/Chicago", -6),
    "MT": ("America/Denver", -7),
    "PT": ("America/Los_Angeles", -8),
}
_RFC822 = re.compile(
    r"^(?:[A-Za-z]{3,9}\.?,?\s*)?\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{2,4}"
    r"(?P<time>\s+\d{1,2}:\d{2}(?::\d{2})?)"
    r"(?:\s*(?P<zone>[+-]\d{4}|[A-Za-z]{1,5}))?(?:\s*\([^)]*\))?$"
)
_EPOCH = re.compile(r"^\d{10}(?:\d{3})?$")
# Times before this are placeholders (epoch 0, "0001-01-01"), not publish times.
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


@cache
def _zones() -> dict[str, tzinfo]:
    zones: dict[str, tzinfo] = {
        name: timezone(timedelta(hours=hours))
        for name, hours in (_EMAIL_ZONES | _OTHER_ZONES).items()
    }
    for name, (key, hours) in _GENERIC_ZONES.items():
        try:
            zones[name] = ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            zones[name] = timezone(timedelta(hours=hours))
    return zones


def _from_epoch(text: str) -> datetime:
    seconds = int(text) / (1000 if len(text) == 13 else 1)
    return datetime.fromtimestamp(seconds, UTC)


def _from_rfc822(text: str) -> datetime | None:
    # `email.utils` skips words it does not understand ("10:16 PM EST" comes back as a naive
    # 10:16), so only the strict RFC 822 shape goes to it.
    match = _RFC822.match(text)
    if not match:
        return None
    body, zone = text[: match.end("time")], None
    name = match.group("zone") or ""
    if name[:1].isalpha():
        name = name.upper()
        if name not in _EMAIL_ZONES:
            zone = _zones().get(name)
            if zone is None:
                return None  # a zone we cannot place: better no time than a wrong one
            name = ""
    try:
        parsed = email.utils.parsedate_to_datetime(f"{body} {name}".strip())
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone or UTC)  # no zone (or "-0000"): UTC
    return parsed


def _from_dateutil(text: str) -> datetime | None:
    """Free-form dates ("March 8, 2026 10:16 PM ET") when python-dateutil is installed (it is
    optional: light ingest workers may not have it). A date must be complete: parsing against
    two different defaults must agree, so "March 2026" or "10:16" alone are refused."""
    try:
        from dateutil import parser
    except ImportError:
        return None
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown zone name warns: refuse it
        for default in (datetime(2000, 1, 1), datetime(2001, 2, 2)):
            try:
                results.append(parser.parse(text, default=default, tzinfos=_zones()))
            except (ValueError, OverflowError, TypeError, IndexError, Warning):
                return None
    if results[0] != results[1]:
        return None
    return results[0]


_PARSERS: tuple[Callable[[str], datetime | None], ...] = (
    lambda text: _from_epoch(text) if _EPOCH.match(text) else None,
    lambda text: datetime.fromisoformat(text),
    _from_rfc822,
    _from_dateutil,
)


def _to_utc(value: datetime) -> datetime | None:
    try:
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)  # naive: UTC, the feeds' usual meaning
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):  # out of range, or an offset of a day or more
        return None
    return value if value >= _EARLIEST else None


def parse_published(value: str | datetime | None, fetched_at: datetime) -> tuple[datetime, bool]:
    """(UTC publish time, inferred): RFC 822 dates (named zones or offsets, seconds optional),
    ISO 8601 (``Z``, offsets, fractions; naive read as UTC), epoch seconds or milliseconds, and
    free-form dates through dateutil when installed. Nothing usable gives the fetch time with
    ``inferred`` set."""
    fallback = (utc(fetched_at), True)
    if isinstance(value, datetime):
        parsed = _to_utc(value)
        return (parsed, False) if parsed else fallback
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(int(value)) if value == value and abs(value) < 1e15 else ""
    if not isinstance(value, str):
        return fallback
    text = " ".join(value.split())
    if not text or len(text) > 100:
        return fallback
    for parse in _PARSERS:
        try:
            candidate = parse(text)
        except (ValueError, OverflowError, OSError):
            continue
        if candidate is not None:
            parsed = _to_utc(candidate)
            return (parsed, False) if parsed else fallback
    return fallback


# --- language ---------------------------------------------------------------------------------

# Function words per language; a word listed for two languages tells nothing and is removed.
_STOPWORDS_RAW: dict[str, str] = {
    "en": "the of to and is are was were with for from after over its it be has have will than "
    "into amid says said this that as at by not but or new up down out shares stocks earnings "
    "quarter billion million profit sales rises falls jumps beats misses soars slumps cuts "
    "raises hits record year years on about against before between during under because while "
    "where when there these those them they their what which who how why you your our his her "
    "been had can could would should first last most some other only just",
    "de": "der die das und ist mit von für auf den dem des im nicht ein eine zu bei nach auch "
    "sich aus wird werden mehr über",
    "fr": "le la les des du et est pour dans une sur au aux avec par qui pas plus ses ce cette",
    "es": "el los las del y por para con una que su al es más sus como",
    "it": "il di che della per con una non gli del alla nel sono",
    "nl": "de het een en van voor op met niet zijn bij naar",
    "pt": "o os da do das dos em para com uma não que ao",
}
_WORD = re.compile(r"[^\W\d_]+")
_SHORT_WORDS = 12
_HEADLINE_WORDS = 20


@cache
def _stopwords() -> dict[str, str]:
    """Function word -> its language, for the words only one language lists."""
    owners: dict[str, set[str]] = {}
    for lang, words in _STOPWORDS_RAW.items():
        for word in words.split():
            owners.setdefault(word, set()).add(lang)
    return {word: langs.pop() for word, langs in owners.items() if len(langs) == 1}


@cache
def _langdetect() -> Callable[[str], str]:
    from langdetect import DetectorFactory, detect

    DetectorFactory.seed = 0  # langdetect samples at random: fix it for repeatable answers
    return detect


def guess_language(text: str) -> str:
    """ISO 639-1 code of ``text``, "und" when it cannot tell.

    Short Latin-script headlines defeat statistical detectors ("Nvidia soars" reads as
    Italian), so English function words decide first: ASCII text with English stopwords and
    none of another language's is English, and so is a short ASCII headline with no stopwords
    at all (finance shorthand such as "Apple Q3 EPS beats"). The rest goes to langdetect.
    """
    words = [w.lower() for w in _WORD.findall(text[:2000])]
    if not words:
        return "und"
    letters = "".join(words)
    ascii_share = len(letters.encode("ascii", "ignore")) / len(letters)
    if ascii_share >= 0.97:
        stopwords = _stopwords()
        counts = Counter(stopwords[w] for w in words if w in stopwords)
        english = counts.pop("en", 0)
        other = max(counts.values(), default=0)
        if len(words) <= _SHORT_WORDS:
            if other == 0:
                return "en"
        elif len(words) <= _HEADLINE_WORDS and other == 0 and english >= 1:
            return "en"  # a headline with its standfirst: the detector misreads these too
        elif len(words) <= 2 * _HEADLINE_WORDS and other == 0 and english >= 2:
            # A longer standfirst: this many words of another listed language nearly always
            # hold some of its function words. Half the archive's detector runs were these.
            return "en"
        elif english >= 3 and english >= 3 * other:
            return "en"
    try:
        code = _langdetect()(text[:2000])
    except Exception:  # langdetect raises its own LangDetectException on featureless text
        return "und"
    return code.split("-")[0].lower() or "und"


# --- the whole story --------------------------------------------------------------------------


def normalize(
    story: RawStory,
    fetched_at: datetime,
    now: datetime,
    max_future: timedelta = timedelta(hours=6),
    max_title_chars: int = 1000,
    max_body_chars: int = 20000,
    watchlist: Watchlist = NO_WATCHLIST,
) -> NewsItem:
    """Clean a raw story into a `NewsItem`, or raise `NormalizeError` saying why not.

    The id is `stable_id` of the canonical URL (else of source and title), so a story reached
    through two tracking links, or polled twice, keeps one id. ``fetched_at`` and ``now`` must
    be time-zone aware (a naive one is the caller's bug and raises ValueError, not
    `NormalizeError`); a publish time more than ``max_future`` after ``now`` is refused.
    ``watchlist``: the analyst's companies, tagged beside the built-in ones.
    """
    # Cut to what a record may carry (a series key is "source:" + it), not refused: a long
    # configured name is no reason to lose its stories.
    source = clean_text(str(story.source or ""))[:MAX_NAME_CHARS].strip()
    raw_title = str(story.title or "")
    if not raw_title.strip():
        raise NormalizeError("title is missing", source)
    title = _clean_field(raw_title, max_title_chars)
    if not title:
        raise NormalizeError("title is empty after cleaning", source)
    body = _clean_field(story.summary, max_body_chars)
    url = canonical_url(str(story.url or ""))
    if not isinstance(story.tickers, tuple | list):
        raise NormalizeError(
            f"tickers is a {type(story.tickers).__name__}, not a list of symbols", source
        )

    published, inferred = parse_published(story.published, fetched_at)
    if not inferred and published > utc(now) + max_future:
        raise NormalizeError(
            f"publish time {published.isoformat()} is in the future "
            f"(more than {max_future} after {utc(now).isoformat()})",
            source,
        )

    stated = (normalize_symbol(str(t)) for t in story.tickers)
    known = list(islice((s for s in stated if s), MAX_TICKERS))
    entities = tag_entities(title, body, known, watchlist, published_at=published)
    relevance = entities.tickers
    try:
        return NewsItem(
            id=stable_id(url, title, source),
            source=source,
            title=title,
            url=url,
            body=body,
            published_at=published,
            fetched_at=fetched_at,
            tickers=tuple(relevance),
            ticker_relevance=relevance,
            companies=entities.companies,
            language=guess_language(f"{title} {body}"),
            time_inferred=inferred,
        )
    except ValueError as exc:  # NewsItem's own checks; unreachable for a cleaned title
        raise NormalizeError(str(exc), source) from exc
