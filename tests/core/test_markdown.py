"""Markdown rendering: what a post may contain once stored, and that hostile input stays inert."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from keel.core.markdown import (
    ELLIPSIS,
    EXCERPT_LENGTH,
    LINK_REL,
    RENDERER_VERSION,
    excerpt_of,
    plain_text,
    reading_minutes,
    render,
    sanitize,
    to_html,
)

# The OWASP XSS filter-evasion cheat sheet's vectors (and Markdown's own ways in), as an author would
# type them into a post. Each must come out inert whatever the parser makes of it.
XSS_VECTORS: list[str] = [
    "<script>alert('XSS')</script>",
    "<SCRIPT SRC=https://xss.example/xss.js></SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    '<script/XSS src="https://xss.example/xss.js"></script>',
    '<<SCRIPT>alert("XSS");//<</SCRIPT>',
    "<SCRIPT SRC=//xss.example/.j>",
    "<script>alert(String.fromCharCode(88,83,83))</script>",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "\\<script\\>alert(1)\\</script\\>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    "<img src=x onerror=alert(1)>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",  # noqa: E501
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",  # noqa: E501
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    "<svg onload=alert(1)>",
    "<svg/onload=alert('XSS')>",
    "<BODY ONLOAD=alert('XSS')>",
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<INPUT TYPE="IMAGE" SRC="javascript:alert(\'XSS\');">',
    "<BGSOUND SRC=\"javascript:alert('XSS');\">",
    '<LINK REL="stylesheet" HREF="javascript:alert(\'XSS\');">',
    "<STYLE>li {list-style-image: url(\"javascript:alert('XSS')\");}</STYLE><UL><LI>XSS</br>",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<IMG STYLE=\"xss:expr/*XSS*/ession(alert('XSS'))\">",
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert(\'XSS\');">',
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    '<iframe srcdoc="<script>alert(1)</script>">',
    '<OBJECT TYPE="text/x-scriptlet" DATA="https://xss.example/scriptlet.html"></OBJECT>',
    '<EMBED SRC="data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciPjxzY3JpcHQ+YWxlcnQoMSk8L3NjcmlwdD48L3N2Zz4=">',  # noqa: E501
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<TD BACKGROUND=\"javascript:alert('XSS')\">",
    '<a href="javascript:alert(1)">x</a>',
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    '<img src="x" onerror="alert(1)"',
    '<a href="https://ok.example" onclick="alert(1)',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;avascript:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "[x]( javascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](VBScript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](DATA:text/html,<script>alert(1)</script>)",
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '![x" onerror="alert(1)](https://ok.example/i.png)',
    '[x](https://ok.example "title" onmouseover="alert(1)")',
    '[x](https://ok.example "a\\" onmouseover=\\"alert(1)")',
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<vbscript:msgbox(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "[a][ref]\n\n[ref]: javascript:alert(1)",
    '[a][ref]\n\n[ref]: <javascript:alert(1)> "t"',
    "[a]\n\n[a]: data:text/html;base64,PHNjcmlwdD4=",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "    <img src=x onerror=alert(1)>",
    "| a |\n|---|\n| <script>alert(1)</script> |",
    "~~<img src=x onerror=alert(1)>~~",
    "**<svg onload=alert(1)>**",
    '> <iframe src="javascript:alert(1)"></iframe>',
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<style>@import 'https://xss.example/x.css';</style>",
    '<base href="javascript:alert(1)//">',
]

_UNSAFE_URL = re.compile(r"^(javascript|vbscript|data|livescript):", re.IGNORECASE)
_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "data", "srcdoc", "xlink:href", "poster"}
_FORBIDDEN_TAGS = {"script", "style", "iframe", "object", "embed", "form", "svg", "math", "img", "base", "meta", "link"}


class _Tags(HTMLParser):
    """The elements and attributes a browser would build from the HTML (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _FORBIDDEN_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if re.fullmatch(r"on\w+", name):
                self.found.append(f"event handler {name} on <{tag}>")
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            # Browsers drop ASCII whitespace and control characters inside a scheme.
            squeezed = re.sub(r"[\x00-\x20]", "", value or "")
            if name in _URL_ATTRIBUTES and _UNSAFE_URL.match(squeezed):
                self.found.append(f"unsafe {name}={value!r} on <{tag}>")

    handle_startendtag = handle_starttag


def _dangerous(stored: str) -> list[str]:
    """What in stored HTML could run script or restyle the page, as a browser would read it."""
    parser = _Tags()
    parser.feed(stored)
    parser.close()
    found = parser.found
    if "<script" in stored.lower():
        found.append("<script")
    return found


def test_the_corpus_is_large_enough() -> None:
    assert len(XSS_VECTORS) >= 50
    assert len(set(XSS_VECTORS)) == len(XSS_VECTORS)


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_every_vector_is_inert_once_stored(vector: str) -> None:
    rendered = render(f"Before.\n\n{vector}\n\nAfter.")

    assert _dangerous(rendered.content_html) == []
    assert rendered.content_html.startswith("<p>Before.</p>")


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_the_sanitiser_alone_holds_even_if_the_parser_let_html_through(vector: str) -> None:
    # The second layer on its own: raw HTML straight into the sanitiser.
    assert _dangerous(sanitize(vector)) == []


def test_the_check_itself_sees_what_it_must() -> None:
    # The detector must catch each kind it claims to, or the corpus above proves nothing.
    assert _dangerous('<a href="javascript:alert(1)">x</a>')
    assert _dangerous('<a href=" JaVa&#x09;script:alert(1)">x</a>')
    assert _dangerous('<img src="data:image/png;base64,AA">')
    assert _dangerous('<p onclick="x()">x</p>')
    assert _dangerous('<p style="color:red">x</p>')
    assert _dangerous("<iframe></iframe>")
    assert _dangerous("<SCRIPT>")
    assert _dangerous("<p>&lt;script&gt; onclick=alert(1)</p>") == []


class TestWhatRenders:
    def test_emphasis_strong_and_strikethrough(self) -> None:
        assert to_html("*a* **b** ~~c~~") == "<p><em>a</em> <strong>b</strong> <s>c</s></p>\n"

    def test_links_get_the_rel(self) -> None:
        out = to_html('[Keel](https://keel.example/a?b=1&c=2 "Home")')
        assert out == (f'<p><a href="https://keel.example/a?b=1&amp;c=2" title="Home" rel="{LINK_REL}">Keel</a></p>\n')

    def test_autolinks_and_mail_links(self) -> None:
        out = to_html("<https://keel.example> and [me](mailto:me@keel.example)")
        assert f'<a href="https://keel.example" rel="{LINK_REL}">https://keel.example</a>' in out
        assert f'<a href="mailto:me@keel.example" rel="{LINK_REL}">me</a>' in out

    def test_bare_urls_stay_text(self) -> None:
        assert to_html("see https://keel.example") == "<p>see https://keel.example</p>\n"

    def test_other_schemes_lose_their_target(self) -> None:
        assert "ftp:" not in to_html("[f](ftp://files.example/x)")

    def test_tables(self) -> None:
        out = to_html("| name | n |\n|:-----|--:|\n| a | 1 |\n| b | 2 |")
        assert "<table>" in out
        assert "<th>name</th>" in out
        assert "<td>b</td>" in out
        assert "style" not in out

    def test_fenced_code_keeps_its_language_and_escapes(self) -> None:
        out = to_html("```python\nif a < b:\n    print('<b>')\n```")
        assert out == ("<pre><code class=\"language-python\">if a &lt; b:\n    print('&lt;b&gt;')\n</code></pre>\n")

    def test_inline_code_headings_lists_quotes(self) -> None:
        out = to_html("# T\n\n- `x`\n- y\n\n3. three\n\n> said\n\n---")
        for piece in ("<h1>T</h1>", "<li><code>x</code></li>", '<ol start="3">', "<blockquote>", "<hr>"):
            assert piece in out, piece

    def test_a_class_other_than_a_language_is_dropped(self) -> None:
        assert sanitize('<code class="x y">a</code>') == "<code>a</code>"

    def test_images_become_links_to_them(self) -> None:
        out = to_html('![a cat](https://img.example/cat.png "Cat")')
        assert out == f'<p><a href="https://img.example/cat.png" title="Cat" rel="{LINK_REL}">a cat</a></p>\n'
        assert "<img" not in out

    def test_typed_html_is_shown_as_text(self) -> None:
        assert to_html("a <b>bold</b> claim") == "<p>a &lt;b&gt;bold&lt;/b&gt; claim</p>\n"


class TestExcerpt:
    def test_plain_text_with_words_apart_and_entities_decoded(self) -> None:
        rendered = render("# Title\n\nOne **two** & <three>.\n\n- four\n- five")
        assert rendered.excerpt == "Title One two & <three>. four five"

    def test_short_text_is_whole(self) -> None:
        assert excerpt_of("a b c") == "a b c"

    def test_long_text_is_cut_at_a_word_with_an_ellipsis(self) -> None:
        text = " ".join(f"word{i}" for i in range(200))
        cut = excerpt_of(text)
        assert len(cut) <= EXCERPT_LENGTH
        assert cut.endswith(ELLIPSIS)
        assert text.startswith(cut[: -len(ELLIPSIS)] + " ")

    def test_exactly_the_limit_is_not_cut(self) -> None:
        text = ("abcd " * 56)[:EXCERPT_LENGTH]
        assert len(text) == EXCERPT_LENGTH
        assert excerpt_of(text.strip()) == text.strip()

    def test_one_enormous_word_is_cut_inside(self) -> None:
        cut = excerpt_of("x" * 1000)
        assert cut == "x" * (EXCERPT_LENGTH - 1) + ELLIPSIS

    def test_whitespace_collapses(self) -> None:
        assert plain_text("<p>a\n\n   b</p><pre><code>c\n  d</code></pre>") == "a b c d"


class TestReadingMinutes:
    @pytest.mark.parametrize(("words", "minutes"), [(0, 1), (1, 1), (344, 1), (345, 2), (690, 3), (2300, 10)])
    def test_words_over_230_rounded_at_least_one(self, words: int, minutes: int) -> None:
        assert reading_minutes("w " * words) == minutes

    def test_render_counts_the_rendered_text(self) -> None:
        rendered = render("**word** " * 460)
        assert rendered.reading_minutes == 2
        assert rendered.render_version == RENDERER_VERSION
