"""Title and URL normalization, the exact-duplicate keys, and the features stories are compared
on for near duplicates (the choice of features is explained in ``near``)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

# An apostrophe or dot inside a word joins it ("U.S." -> "us", "Apple's" -> "apples"), so the
# spellings agree; any other punctuation separates words.
_JOINER = re.compile(r"(?<=[^\W\d_])['’.](?=[^\W\d_])")

# fmt: off
_STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has", "have",
        "he", "her", "his", "in", "into", "is", "it", "its", "of", "on", "or", "over", "says", "said",
        "she", "than", "that", "the", "their", "this", "to", "up", "was", "were", "will", "with",
        "after", "amid",
    }
)
# fmt: on


class _PunctuationToSpace(dict[int, int]):
    """A ``str.translate`` table that learns each code point's category once."""

    def __missing__(self, code: int) -> int:
        value = 0x20 if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = value
        return value


_PUNCTUATION = _PunctuationToSpace()


def normalize_title(title: str) -> str:
    """The exact-duplicate form of a title: lower-cased, punctuation stripped, whitespace folded."""
    text = _JOINER.sub("", unicodedata.normalize("NFKC", title).lower())
    return " ".join(text.translate(_PUNCTUATION).split())


def text_key(text: str) -> str:
    """The ``SeenStore`` key of an already normalized text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def url_key(url: str) -> str:
    """The ``SeenStore`` key of a canonical URL."""
    return text_key(url.strip())


def title_key(title: str) -> str:
    """The ``SeenStore`` key of a title (of its normalized form)."""
    return text_key(normalize_title(title))


def _content_words(normalized: str) -> list[str]:
    words = normalized.split()
    kept = [w for w in words if w not in _STOPWORDS] or words
    # A crude plural cut: "rates"/"rate", "falls"/"fall" agree; both sides get the same cut.
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in kept]


def shingles(
    title: str, body: str = "", *, short_title_words: int = 4, body_words: int = 30
) -> set[str]:
    """The features a story is compared on: content words and adjacent word pairs."""
    return normalized_shingles(normalize_title(title), body, short_title_words, body_words)


def normalized_shingles(
    normalized: str, body: str, short_title_words: int, body_words: int
) -> set[str]:
    """``shingles`` of a title already passed through ``normalize_title``."""
    words = _content_words(normalized)
    if len(words) < short_title_words and body.strip():
        words += _content_words(normalize_title(" ".join(body.split()[:body_words])))
    grams = set(words)
    grams.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    return grams
