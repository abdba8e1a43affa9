"""Markdown for posts and comments: rendered once, at write time, into HTML that is safe to insert.

Two independent layers, so a mistake in one is caught by the other. markdown-it-py parses
CommonMark (plus tables and strikethrough) with raw HTML *disabled*: `<script>` typed in a post is
text, not a tag, and its link validation already refuses `javascript:`, `vbscript:`, `file:` and
`data:` targets. Its output then goes through nh3 (the Rust ammonia sanitiser) with an explicit
allow-list: only the tags the renderer itself produces, only the attributes they need, and URLs
only of the http, https and mailto schemes. Links get `rel="nofollow ugc noopener"`: the author is
not vouched for (`nofollow ugc`) and the linked page gets no handle on ours (`noopener`).

Images are not rendered as images but as links to them: an `<img>` loads from wherever its author
chose the moment a reader opens the page (a tracking pixel, the reader's address in someone's log),
and the web UI's Content-Security-Policy allows images only from its own origin, so they would not
show anyway. The alt text stays readable as the link's text.

The stored HTML remembers the `RENDERER_VERSION` it was made with; raise it whenever a rule here
changes and run `keel posts rerender` so older rows are made again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# Raise on any change to the rules below: rows made with an older version are rendered again.
RENDERER_VERSION = 1

EXCERPT_LENGTH = 280
WORDS_PER_MINUTE = 230
ELLIPSIS = "…"

LINK_REL = "nofollow ugc noopener"
URL_SCHEMES = frozenset({"http", "https", "mailto"})

# What markdown-it's CommonMark preset, tables and strikethrough produce, and nothing else.
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
        "strong", "em", "s", "code", "pre", "blockquote",
        "ul", "ol", "li", "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "ol": {"start"},
    # `language-python` on fenced code, for a highlighter the client may bring.
    "code": {"class"},
    # Table column alignment comes as `style="text-align:..."`; no style survives, so it is lost.
    "th": set(),
    "td": set(),
}
# Whose content goes with them, should such a tag ever reach the sanitiser (it cannot with HTML off).
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math"}
)
_LANGUAGE_CLASS = re.compile(r"^language-[A-Za-z0-9_+#.-]{1,40}$")


def _image_as_link(
    renderer: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    """`![alt](src "title")` becomes a link to the image, its alt text as the link's text."""
    token = tokens[index]
    alt = renderer.renderInlineAsText(token.children or [], options, env) or str(token.attrGet("src") or "")
    href = escapeHtml(str(token.attrGet("src") or ""))
    title = token.attrGet("title")
    title_attr = f' title="{escapeHtml(str(title))}"' if title else ""
    return f'<a href="{href}"{title_attr}>{escapeHtml(alt)}</a>'


def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    parser.add_render_rule("image", _image_as_link)
    return parser


_PARSER = _parser()


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Class names only of the `language-x` kind: a class can restyle the page around the post."""
    if attribute == "class":
        return value if _LANGUAGE_CLASS.match(value) else None
    return value


def sanitize(html: str) -> str:
    """HTML cut down to the allow-list; the last word on what a post or comment may contain."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_keep_attribute,
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


def to_html(source: str) -> str:
    """Markdown to sanitised HTML."""
    return sanitize(_PARSER.render(source))


# Elements after which the text runs on as a new word, so "<p>a</p><p>b</p>" reads "a b".
_BREAKING = frozenset(
    {"p", "br", "hr", "li", "tr", "td", "th", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"}
)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _BREAKING:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BREAKING:
            self.parts.append(" ")


def plain_text(html: str) -> str:
    """The text a reader sees in the HTML, whitespace collapsed to single spaces."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


def excerpt_of(text: str, *, length: int = EXCERPT_LENGTH) -> str:
    """At most `length` characters of the text, cut at a word boundary and ending in an ellipsis if cut."""
    if len(text) <= length:
        return text
    cut = text[: length - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    # One enormous word: cut inside it rather than leave nothing.
    kept = cut[:space] if space > 0 else cut[: length - len(ELLIPSIS)]
    return kept.rstrip(" ,;:.-\u2013\u2014") + ELLIPSIS


def reading_minutes(text: str) -> int:
    """Words at `WORDS_PER_MINUTE`, rounded, and never less than a minute."""
    return max(1, math.floor(len(text.split()) / WORDS_PER_MINUTE + 0.5))


@dataclass(frozen=True, slots=True)
class Rendered:
    """What is stored beside a post's (or a comment's) Markdown source."""

    content_html: str
    excerpt: str
    reading_minutes: int
    render_version: int = RENDERER_VERSION


def render(source: str) -> Rendered:
    html = to_html(source)
    text = plain_text(html)
    return Rendered(content_html=html, excerpt=excerpt_of(text), reading_minutes=reading_minutes(text))
