from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from finsent.core.records import MAX_NAME_CHARS, NewsItem, decode, encode, stable_id
from finsent.ingest.normalize import (
    NormalizeError,
    canonical_url,
    clean_text,
    guess_language,
    normalize,
    parse_published,
)
from finsent.ingest.raw import RawStory
from finsent.ingest.tickers import MAX_TICKERS, TICKER_RE

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
FETCHED = NOW - timedelta(minutes=1)
TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")


def story(
    title: str = "Apple shares jump after earnings beat",
    *,
    source: str = "cnbc-top",
    url: str = "",
    summary: str = "",
    published: str | datetime | None = None,
    tickers: tuple[str, ...] = (),
) -> RawStory:
    return RawStory(source, title, url, summary, published, tickers)


# --- canonical_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "HTTP://Example.COM:80/a/./b/../c/?utm_source=x&b=2&a=1&fbclid=z#frag",
            "http://example.com/a/c?a=1&b=2",
        ),
        ("https://www.wsj.com/articles/x?mod=rss_markets_main", "https://www.wsj.com/articles/x"),
        ("https://example.com/search?mod=advanced", "https://example.com/search?mod=advanced"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/", "https://example.com/"),
        ("https://example.com:8443/x/", "https://example.com:8443/x"),
        ("https://user:pw@example.com/x", "https://example.com/x"),
        ("http://a.com/%7euser/%2e%2e/x%2fy", "http://a.com/x%2Fy"),
        ("https://a.com/a b?q=a+b", "https://a.com/a%20b?q=a%20b"),
        ("  https://finance.yahoo.com/news/x.html?guccounter=1&ncid=yahoo  ", None),
        ("", ""),
        ("ftp://example.com/file", ""),
        ("mailto:desk@example.com", ""),
        ("/relative/path", ""),
        ("http://[not-ipv6/", ""),
        ("https://exa mple.com/", ""),
    ],
)
def test_canonical_url_examples(url: str, expected: str | None) -> None:
    if expected is None:
        expected = "https://finance.yahoo.com/news/x.html"
    assert canonical_url(url) == expected


_segment = st.sampled_from([".", "..", "%2e", "a", "B", "%7E", "%2F", "x y", "ü", "", "%", "%zz"])
_param = st.tuples(
    st.sampled_from(["utm_source", "UTM_Medium", "utm_", "fbclid", "gclid", "mod", "id", "q", "p"]),
    st.text(max_size=6),
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "ftp", ""]))
    host = draw(st.sampled_from(["Example.com", "news.example.co.uk", "[::1]", "münchen.de", ""]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":99999", ":x"]))
    path = "/".join(draw(st.lists(_segment, max_size=6)))
    params = draw(st.lists(_param, max_size=5))
    query = "&".join(f"{k}={v}" for k, v in params)
    fragment = draw(st.sampled_from(["", "#top", "#"]))
    return f"{scheme}://{host}{port}/{path}?{query}{fragment}"


@given(st.one_of(urls(), st.text(max_size=80)))
@example("http://example.com/?mod=1&N=2")  # an upper-case key sorts before lower-case ones
def test_canonical_url_is_idempotent_and_untracked(url: str) -> None:
    canonical = canonical_url(url)
    assert canonical_url(canonical) == canonical
    if canonical:
        parts = urlsplit(canonical)
        assert parts.scheme in {"http", "https"} and not parts.fragment
        # Query keys are case-sensitive, so they are sorted as they are spelled.
        keys = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
        lowered = [k.lower() for k in keys]
        assert not any(k.startswith("utm_") or k in {"fbclid", "gclid"} for k in lowered)
        assert keys == sorted(keys)


# --- clean_text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<p>Apple&nbsp;<b>jumps</b></p><script>alert('x')</script>", "Apple jumps"),
        ("<style>.x{color:red}</style>Fed holds rates", "Fed holds rates"),
        ("AT&amp;amp;T sues", "AT&T sues"),  # double-escaped feed
        ("&amp;lt;b&amp;gt;Hi&amp;lt;/b&amp;gt;", "Hi"),  # escaped markup, escaped again
        ("S&P 500 &lt; 4,000", "S&P 500 < 4,000"),
        ("line<br>break", "line break"),
        ("  a\x00b\u200bc \t\n d  ", "a bc d"),
        ("Caf&eacute; &#8220;quoted&#8221;", "Café “quoted”"),
        ("", ""),
    ],
)
def test_clean_text_examples(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


_html_piece = st.sampled_from(
    [
        "<b>",
        "</b>",
        "<p class='lead'>",
        "</p>",
        "<br/>",
        '<a href="https://x.com/?a=1&amp;b=2">',
        "</a>",
        "<script>var x = '<b>';</script>",
        "<style>p { color: red }</style>",
        "<!-- note -->",
        "&amp;",
        "&lt;",
        "&gt;",
        "&quot;",
        "&#39;",
        "&#x27;",
        "&nbsp;",
        "&amp;amp;",
        "&amp;lt;i&amp;gt;",
        "&lt;em&gt;",
        "\n",
        "\t",
        " ",
    ]
)
html_ish = st.lists(
    st.one_of(_html_piece, st.text(alphabet=st.characters(categories=["L", "N"]), max_size=8)),
    max_size=20,
).map("".join)


@given(html_ish)
@example("&lt;A<p class='lead'>&quot;&gt;")  # unescapes to '<A ">', a tag to a browser
def test_clean_text_leaves_no_markup(raw: str) -> None:
    cleaned = clean_text(raw)
    assert not TAG.search(cleaned)
    assert not ENTITY.search(cleaned)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert clean_text(cleaned) == cleaned


@given(st.text(max_size=200))
def test_clean_text_is_idempotent(raw: str) -> None:
    cleaned = clean_text(raw)
    assert clean_text(cleaned) == cleaned
    assert cleaned == cleaned.strip()
    cleaned.encode("utf-8")  # no lone surrogates survive


def test_clean_text_stays_a_fixed_point_for_deeply_escaped_text() -> None:
    cleaned = clean_text("&amp;amp;amp;amp;amp;lt;b&amp;amp;amp;amp;amp;gt;")
    assert clean_text(cleaned) == cleaned


# --- parse_published --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 08 Mar 2026 22:16 GMT", datetime(2026, 3, 8, 22, 16, tzinfo=UTC)),  # CNBC RSS
        ("Sun, 08 Mar 2026 22:16:05 GMT", datetime(2026, 3, 8, 22, 16, 5, tzinfo=UTC)),
        ("Sun, 08 Mar 2026 17:16:05 EST", datetime(2026, 3, 8, 22, 16, 5, tzinfo=UTC)),
        ("Sun, 08 Mar 2026 18:16:05 EDT", datetime(2026, 3, 8, 22, 16, 5, tzinfo=UTC)),
        ("Sun, 08 Mar 2026 14:16 PST", datetime(2026, 3, 8, 22, 16, tzinfo=UTC)),
        ("Sun, 08 Mar 2026 23:16:00 CET", datetime(2026, 3, 8, 22, 16, tzinfo=UTC)),
        ("Sun, 08 Mar 2026 23:16:00 +0100", datetime(2026, 3, 8, 22, 16, tzinfo=UTC)),
        ("Sun, 8 Mar 2026 22:16:00 +0000 (UTC)", datetime(2026, 3, 8, 22, 16, tzinfo=UTC)),
        ("2026-03-08T21:05:33.000Z", datetime(2026, 3, 8, 21, 5, 33, tzinfo=UTC)),  # Bloomberg
        ("2023-03-10 22:14:15+00:00", datetime(2023, 3, 10, 22, 14, 15, tzinfo=UTC)),  # archive
        ("2026-03-08T16:05:33-05:00", datetime(2026, 3, 8, 21, 5, 33, tzinfo=UTC)),
        ("2026-03-08T21:05:33", datetime(2026, 3, 8, 21, 5, 33, tzinfo=UTC)),  # naive: UTC
        ("1678486455", datetime(2023, 3, 10, 22, 14, 15, tzinfo=UTC)),  # epoch seconds
        (datetime(2026, 3, 8, 21, 5), datetime(2026, 3, 8, 21, 5, tzinfo=UTC)),
        (
            datetime(2026, 3, 8, 23, 5, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 8, 21, 5, tzinfo=UTC),
        ),
    ],
)
def test_parse_published_examples(value: str | datetime, expected: datetime) -> None:
    parsed, inferred = parse_published(value, FETCHED)
    assert (parsed, inferred) == (expected, False)
    assert parsed.tzinfo is UTC


def test_parse_published_free_form_dates_when_dateutil_is_installed() -> None:
    pytest.importorskip("dateutil")
    # 10:16 PM Eastern on the day daylight saving began: UTC-4.
    parsed, inferred = parse_published("March 8, 2026 10:16 PM ET", FETCHED)
    assert (parsed, inferred) == (datetime(2026, 3, 9, 2, 16, tzinfo=UTC), False)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "not a date",
        "Sun, 08 Mar 2026 22:16:05 XYZ",  # a zone we cannot place
        "March 2026",  # no day
        "1970-01-01T00:00:00Z",  # placeholder
        "Tue, 10 Mar 2026 10:00:00 +9999",
    ],
)
def test_parse_published_falls_back_to_fetch_time(value: str | None) -> None:
    assert parse_published(value, FETCHED) == (FETCHED, True)


_offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@given(
    st.one_of(
        st.none(),
        st.text(max_size=40),
        st.datetimes(timezones=st.none() | _offsets),
        st.datetimes().map(str),
        st.integers().map(str),
    )
)
def test_parse_published_always_gives_aware_utc(value: object) -> None:
    parsed, inferred = parse_published(value, FETCHED)  # type: ignore[arg-type]
    assert parsed.tzinfo is UTC
    if inferred:
        assert parsed == FETCHED


@given(
    st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2100, 1, 1), timezones=_offsets)
)
def test_parse_published_round_trips_formatted_times(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    for text in (
        email.utils.format_datetime(moment),
        moment.isoformat(),
        moment.isoformat(sep=" "),
    ):
        assert parse_published(text, FETCHED) == (moment.astimezone(UTC), False)


# --- guess_language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Apple shares jump after earnings beat", "en"),
        ("Nvidia soars", "en"),
        ("Tesla recalls 2 million cars", "en"),
        ("Apple Q3 EPS beats", "en"),
        ("Die Aktie von Siemens steigt deutlich nach starken Zahlen", "de"),
        ("Le CAC 40 termine en hausse avec les valeurs bancaires", "fr"),
        (
            "La Bourse de Paris termine en hausse, portée par les valeurs bancaires et le "
            "luxe, tandis que les investisseurs attendent les chiffres de l'inflation aux "
            "Etats-Unis",
            "fr",
        ),
        (
            "Evan Gershkovich amava la Russia, il paese che si è rivoltato contro di lui Il "
            "corrispondente del Wall Street Journal",
            "it",
        ),
        ("日本株が上昇、半導体関連が買われる", "ja"),
        ("", "und"),
        ("12345 !!!", "und"),
    ],
)
def test_guess_language(text: str, expected: str) -> None:
    assert guess_language(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # Long English headlines with a standfirst, and few of the first list's function words:
        # they used to cost a statistical detector's run each.
        "Lula launches stinging attack on Bolsonaro in inaugural address Leftwing leader "
        "returns to power for third term in divided South American nation",
        "India wades into messy index regulation tussle Don't ignore influence of financial "
        "benchmarks just because they seem dull",
        # 25 words, two of the list's function words ("to", twice).
        "Erdogan Urges Putin to Declare Unilateral Cease-Fire in Ukraine Turkish President "
        "Recep Tayyip Erdogan urged Russia's Vladimir Putin to declare a unilateral ceasefire",
        # The detector read this one as Dutch.
        "Biden's Big Bank Contradiction Regulators stymie a midsize bank merger but help "
        "JPMorgan get bigger.",
    ],
)
def test_english_function_words_decide_without_the_detector(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_detector() -> None:
        raise AssertionError("the statistical detector ran")

    monkeypatch.setattr("finsent.ingest.normalize._langdetect", no_detector)
    assert guess_language(text) == "en"


# --- normalize --------------------------------------------------------------------------------


def test_normalize_builds_a_clean_item() -> None:
    item = normalize(
        story(
            "<b>Apple</b> shares jump &amp; <script>track()</script>rally",
            url="https://www.cnbc.com/2026/03/08/apple.html?utm_source=rss&__source=x#x",
            summary="<p>Microsoft also rose.</p>",
            published="Sun, 08 Mar 2026 22:16 GMT",
            tickers=("aapl", "$tsla", "not a ticker!"),
        ),
        fetched_at=FETCHED,
        now=NOW,
    )
    assert item.title == "Apple shares jump & rally"
    assert item.body == "Microsoft also rose."
    assert item.url == "https://www.cnbc.com/2026/03/08/apple.html?__source=x"
    assert item.id == stable_id(item.url, item.title, "cnbc-top")
    assert item.published_at == datetime(2026, 3, 8, 22, 16, tzinfo=UTC)
    assert item.fetched_at == FETCHED and not item.time_inferred
    assert item.language == "en"
    assert item.ticker_relevance == {"AAPL": 1.0, "TSLA": 1.0, "MSFT": 0.5}
    assert item.tickers == ("AAPL", "TSLA", "MSFT")
    assert item.companies == ()


def test_companies_are_tagged_as_of_the_publish_time() -> None:
    def tagged(title: str, published: str) -> NewsItem:
        return normalize(story(title, published=published), fetched_at=FETCHED, now=NOW)

    # SI was Silvergate's in 2023 and is Shoulder Innovations' now.
    assert tagged("Silvergate to wind down", "2023-03-08T20:00:00Z").tickers == ("SI",)
    assert tagged("Silvergate to wind down", "2026-03-08T20:00:00Z").tickers == ()
    # A company without a ticker counts by name.
    item = tagged("Pear Therapeutics files for bankruptcy", "2023-04-07T12:00:00Z")
    assert item.tickers == () and item.companies == ("pear-therapeutics",)


def test_missing_time_uses_fetch_time_and_says_so() -> None:
    item = normalize(story(published=None), fetched_at=FETCHED, now=NOW)
    assert (item.published_at, item.time_inferred) == (FETCHED, True)


def test_future_time_is_rejected_within_tolerance_accepted() -> None:
    soon = (NOW + timedelta(hours=5)).isoformat()
    assert normalize(story(published=soon), fetched_at=FETCHED, now=NOW).published_at > NOW
    late = (NOW + timedelta(hours=7)).isoformat()
    with pytest.raises(NormalizeError, match="in the future") as info:
        normalize(story(published=late), fetched_at=FETCHED, now=NOW)
    assert "in the future" in info.value.reason
    # "now" is the caller's, not the wall clock's: a 2023 story is "future" to a 2020 replay.
    with pytest.raises(NormalizeError):
        normalize(
            story(published="2023-03-10 22:14:15+00:00"),
            fetched_at=FETCHED,
            now=datetime(2020, 1, 1, tzinfo=UTC),
        )


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("", "title is missing"),
        ("  \n ", "title is missing"),
        ("<script>alert(1)</script>", "title is empty after cleaning"),
        ("<p> &nbsp; </p>", "title is empty after cleaning"),
    ],
)
def test_empty_titles_are_errors(title: str, reason: str) -> None:
    with pytest.raises(NormalizeError) as info:
        normalize(story(title), fetched_at=FETCHED, now=NOW)
    assert info.value.reason == reason


def test_same_story_via_two_tracking_urls_gets_one_id() -> None:
    a = normalize(
        story(url="https://www.reuters.com/markets/us/fed-holds/?utm_source=twitter&taid=1"),
        fetched_at=FETCHED,
        now=NOW,
    )
    b = normalize(
        story(url="HTTPS://WWW.Reuters.com:443/markets/us/fed-holds?fbclid=abc#comments"),
        fetched_at=NOW,
        now=NOW,
    )
    assert a.id == b.id
    assert a.url == b.url == "https://www.reuters.com/markets/us/fed-holds"


def test_no_url_gives_a_stable_content_hash_id() -> None:
    a = normalize(story("Fed  holds <i>rates</i>"), fetched_at=FETCHED, now=NOW)
    b = normalize(story("Fed holds rates"), fetched_at=NOW, now=NOW)
    assert a.url == "" and a.id == b.id == stable_id("", "Fed holds rates", "cnbc-top")
    other_source = normalize(story("Fed holds rates", source="wire"), fetched_at=NOW, now=NOW)
    assert other_source.id != a.id


def test_overlong_text_is_truncated() -> None:
    item = normalize(
        story("word " * 500, summary="body " * 10_000),
        fetched_at=FETCHED,
        now=NOW,
        max_title_chars=100,
        max_body_chars=1000,
    )
    assert len(item.title) <= 100 and item.title.endswith("…")
    assert len(item.body) <= 1000 and item.body.endswith("…")


_published = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.datetimes(timezones=st.none() | _offsets),
)


@given(
    source=st.text(max_size=20),
    title=st.one_of(st.text(max_size=120), html_ish),
    url=st.one_of(urls(), st.text(max_size=60)),
    summary=st.one_of(st.text(max_size=200), html_ish),
    published=_published,
    tickers=st.lists(st.text(max_size=8), max_size=4).map(tuple),
)
def test_normalize_raises_only_normalize_error(
    source: str,
    title: str,
    url: str,
    summary: str,
    published: str | datetime | None,
    tickers: tuple[str, ...],
) -> None:
    raw = RawStory(
        source=source, title=title, url=url, summary=summary, published=published, tickers=tickers
    )
    try:
        item = normalize(raw, fetched_at=FETCHED, now=NOW)
    except NormalizeError as exc:
        assert exc.reason
        return
    assert item.title and item.title == item.title.strip()
    assert item.published_at.tzinfo is UTC
    assert item.published_at <= NOW + timedelta(hours=6)
    assert all(TICKER_RE.match(t) for t in item.tickers)
    assert set(item.tickers) == set(item.ticker_relevance)
    assert len(item.id) == 32


# --- hostile input: linear cleaning, typed errors, fan-out, invisible characters -------------


@pytest.mark.parametrize("unit", ["<a ", "<!--", "</a", '<a x="', "<![CDATA["])
def test_clean_text_is_linear_on_unclosed_markup(unit: str) -> None:
    started = time.monotonic()
    clean_text(unit * 6000)
    assert time.monotonic() - started < 0.5


def test_a_huge_raw_field_is_cut_before_cleaning() -> None:
    started = time.monotonic()
    item = normalize(story("Fed holds", summary="<b>x</b> " * 500_000), fetched_at=NOW, now=NOW)
    assert time.monotonic() - started < 2.0
    assert len(item.body) <= 20_000


@pytest.mark.parametrize("title", ["<![ x ]]>", "<!x", "</>", "<![CDATA[x", "<script>"])
def test_markup_edge_cases_give_an_item_or_a_normalize_error(title: str) -> None:
    try:
        normalize(story(title), fetched_at=NOW, now=NOW)
    except NormalizeError as exc:
        assert exc.reason == "title is empty after cleaning"


def test_a_lone_surrogate_in_a_url_gives_no_url() -> None:
    assert canonical_url("https://example.com/a\ud800b") == ""
    item = normalize(story(url="https://example.com/a\ud800b"), fetched_at=NOW, now=NOW)
    assert item.url == ""


def test_tickers_that_are_not_a_list_are_a_normalize_error() -> None:
    raw = RawStory("wire", "Apple jumps", tickers=5)  # type: ignore[arg-type]
    with pytest.raises(NormalizeError, match="tickers is a int, not a list of symbols"):
        normalize(raw, fetched_at=NOW, now=NOW)


def test_a_story_names_a_bounded_number_of_tickers() -> None:
    stated = tuple(f"Q{a}{b}{c}" for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJ" for c in "ABCDEFGHIJ")
    item = normalize(story("Market roundup", tickers=stated * 20), fetched_at=NOW, now=NOW)
    assert len(item.tickers) == MAX_TICKERS and set(item.tickers) <= set(stated)


@pytest.mark.parametrize("joiner", ["\u200d", "\u200c", "\u2063", "\u180e"])
def test_an_invisible_character_does_not_split_a_cashtag(joiner: str) -> None:
    item = normalize(story(f"${'AA'}{joiner}PL surges"), fetched_at=NOW, now=NOW)
    assert item.tickers == ("AAPL",)


def test_a_source_name_too_long_for_a_record_is_cut_not_refused() -> None:
    item = normalize(
        RawStory(source="Wire " * 100, title="Harbor Trust Bank halts withdrawals"),
        fetched_at=NOW,
        now=NOW,
    )
    assert item.source.startswith("Wire Wire") and len(item.source) <= MAX_NAME_CHARS
    assert decode(NewsItem, encode(item)) == item
