"""Posts people want to write and read: Markdown with a preview, tags, New/Top, votes from the
feed, comments with replies; hostile Markdown stays inert in Chromium; how it all looks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, expect

from tests.browser.conftest import Account, Keel, Visit, Watch

pytestmark = pytest.mark.slow  # a real server and a real browser

MARKDOWN = (
    "Tie it **before** you need it; see [the knot chart](https://example.com/knots).\n\n"
    "| knot | use |\n|---|---|\n| bowline | a loop that will not slip |\n| clove hitch | to a post |\n"
)
# A handful of the classic vectors; tests/core/test_markdown.py holds the whole corpus.
XSS = "\n\n".join(
    (
        "[x](javascript:alert(1))",
        "[y](JaVaScRiPt:alert(1))",
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "<svg onload=alert(1)>",
        '<a href="javascript:alert(1)">z</a>',
        "![pixel](https://tracker.example/p.gif)",
        "<iframe src=https://evil.example></iframe>",
        '<div style="background:url(https://evil.example/x)">styled</div>',
        "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    )
)


def api_post(keel: Keel, author: Account, title: str, content: str, tags: list[str] | None = None) -> int:
    token = keel.token(author)
    with keel.api() as http:
        created = http.post(
            "/api/v1/posts",
            json={"title": title, "content": content, "published": True, "tags": tags or []},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        return int(created.json()["id"])


def api_vote(keel: Keel, voter: Account, post_id: int) -> None:
    with keel.api() as http:
        voted = http.post(f"/api/v1/posts/{post_id}/vote", headers={"Authorization": f"Bearer {keel.token(voter)}"})
        assert voted.status_code == 204, voted.text


def api_comment(keel: Keel, who: Account, post_id: int, content: str, parent_id: int | None = None) -> int:
    with keel.api() as http:
        body: dict[str, Any] = {"content": content}
        if parent_id is not None:
            body["parent_id"] = parent_id
        made = http.post(
            f"/api/v1/posts/{post_id}/comments", json=body, headers={"Authorization": f"Bearer {keel.token(who)}"}
        )
        assert made.status_code == 201, made.text
        return int(made.json()["id"])


def titles(page: Page) -> list[str]:
    return page.locator(".post-card h2").all_inner_texts()


def test_a_post_is_written_in_markdown_previewed_published_voted_discussed_and_found_by_tag(
    visit: Visit, second_visit: Visit, keel: Keel
) -> None:
    author = keel.register("knot_writer")
    reader = keel.register("knot_reader")
    harbour = api_post(keel, author, "A quiet harbour", "Nothing happened, **beautifully**.", ["harbours"])
    for name in ("deckhand_one", "deckhand_two"):
        api_vote(keel, keel.register(name), harbour)
    page = visit.page

    # Write: Markdown, a tag typed as "#Sailing", the server's preview, then Publish.
    visit.sign_in(author)
    visit.goto("/posts/new")
    page.get_by_label("Title").fill("Knots worth knowing")
    page.get_by_label("Text").fill(MARKDOWN)
    page.get_by_label("Tags", exact=True).fill("#Sailing")
    page.get_by_label("Tags", exact=True).press("Enter")
    expect(page.locator(".tag-chips.editing")).to_have_text(re.compile("#sailing"))
    page.get_by_label("Tags", exact=True).fill("not a tag!")
    page.get_by_label("Tags", exact=True).press("Enter")
    expect(page.locator("[data-field=tags] .field-error")).to_contain_text("cannot be a tag")
    page.get_by_label("Tags", exact=True).fill("")
    page.get_by_role("tab", name="Preview").click()
    preview = page.get_by_role("tabpanel")
    expect(preview.locator("strong")).to_have_text("before")
    expect(preview.get_by_role("link", name="the knot chart")).to_have_attribute("rel", "nofollow ugc noopener")
    expect(preview.locator("table td").first).to_have_text("bowline")
    visit.screenshot("posts-rich-editor-preview")
    # Leaving with unsaved text asks first; staying keeps it.
    page.get_by_role("link", name="Feed").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(f"{keel.url}/posts/new")
    page.get_by_role("tab", name="Write").click()
    expect(page.get_by_label("Text")).to_have_value(MARKDOWN)
    page.get_by_role("button", name="Publish").click()

    heading = page.get_by_role("heading", name="Knots worth knowing")
    expect(heading).to_be_visible()
    post_id = int(page.url.rsplit("/", 1)[1])
    content = page.locator(".post-content")
    expect(content.locator("strong")).to_have_text("before")
    expect(content.locator("table")).to_be_visible()
    expect(page.get_by_text("1 min read")).to_be_visible()
    expect(page.get_by_role("link", name="#sailing")).to_be_visible()
    # Authors cannot vote for their own post (403 own_post): the count shows, no button.
    expect(page.get_by_role("button", name=re.compile("Vote"))).to_have_count(0)
    expect(page.locator(".post-actions .votes")).to_have_text("▲ 0 votes")

    # A second reader finds it in the feed by its excerpt, and votes from the card.
    other = second_visit.page
    second_visit.sign_in(reader)
    second_visit.goto("/")
    card = other.locator(".post-card", has_text="Knots worth knowing")
    expect(card.locator(".excerpt")).to_have_text(
        "Tie it before you need it; see the knot chart. "
        "knot use bowline a loop that will not slip clove hitch to a post"
    )
    expect(card.get_by_role("link", name="#sailing")).to_be_visible()
    card.get_by_role("button", name=re.compile("^Vote for")).click()
    expect(card.get_by_role("button", name=re.compile("^Voted for"))).to_have_text("▲ Voted · 1 vote")

    # New is newest first; Top is most voted first, and the address keeps the choice.
    expect(other.locator(".post-card h2").first).to_have_text("Knots worth knowing")
    other.get_by_role("link", name="Top", exact=True).click()
    expect(other).to_have_url(f"{keel.url}/?sort=top")
    expect(other.locator(".post-card h2").first).to_have_text("A quiet harbour")
    assert titles(other)[:2] == ["A quiet harbour", "Knots worth knowing"]
    other.reload()
    expect(other.get_by_role("link", name="Top", exact=True)).to_have_attribute("aria-current", "page")
    expect(other.locator(".post-card h2").first).to_have_text("A quiet harbour")
    other.go_back()
    expect(other.get_by_role("link", name="New", exact=True)).to_have_attribute("aria-current", "page")
    expect(other.locator(".post-card h2").first).to_have_text("Knots worth knowing")

    # The reader opens it, comments in Markdown and replies to that comment.
    other.get_by_role("link", name="Knots worth knowing", exact=True).click()
    expect(other.get_by_role("heading", name="Comments")).to_be_visible()
    other.get_by_label("Add a comment").fill("Which one **first**?")
    other.get_by_role("button", name="Comment", exact=True).click()
    first = other.locator(".comment", has_text="Which one first?")
    expect(first.locator(".comment-content strong").first).to_have_text("first")
    expect(other.get_by_role("heading", name="1 comment")).to_be_visible()
    first.get_by_role("button", name="Reply").first.click()
    other.get_by_label("Reply to @knot_reader").fill("The bowline, I think.")
    other.get_by_role("button", name="Reply", exact=True).last.click()
    reply = first.locator(".replies .comment", has_text="The bowline, I think.")
    expect(reply).to_be_visible()
    expect(other.get_by_role("heading", name="2 comments")).to_be_visible()
    # A reply's Reply answers its parent's thread (one level only).
    reply.get_by_role("button", name="Reply").click()
    expect(other.get_by_label("Reply to @knot_reader")).to_have_value("@knot_reader ")
    other.get_by_role("button", name="Cancel").click()
    second_visit.screenshot("posts-rich-comments")

    # The author edits the post, then deletes the reader's comment: its reply keeps it as "[deleted]".
    page.reload()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Title").fill("Knots worth knowing well")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Knots worth knowing well")).to_be_visible()
    thread = page.locator(".comment-list > .comment").first
    thread.get_by_role("button", name="Delete").first.click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(thread.locator(".comment-meta").first).to_contain_text("[deleted]")
    expect(thread.locator(".replies .comment")).to_contain_text("The bowline, I think.")
    expect(page.get_by_role("heading", name="1 comment")).to_be_visible()
    page.reload()
    expect(page.locator(".comment-list > .comment").first.locator(".comment-meta").first).to_contain_text("[deleted]")

    # The tag page lists the post, with the same tabs.
    page.get_by_role("link", name="#sailing").first.click()
    expect(page).to_have_url(f"{keel.url}/tags/sailing")
    expect(page.get_by_role("heading", level=1)).to_have_text("Posts tagged #sailing")
    assert titles(page) == ["Knots worth knowing well"]
    expect(page.get_by_role("link", name="Top", exact=True)).to_be_visible()
    visit.screenshot("posts-rich-tag-page")
    assert post_id > harbour
    visit.watch.assert_clean()
    second_visit.watch.assert_clean()


def test_hostile_markdown_stays_inert_in_chromium(visit: Visit, keel: Keel) -> None:
    author = keel.register("xss_author")
    post_id = api_post(keel, author, "Nothing runs here", XSS)
    page = visit.page
    dialogs: list[str] = []
    outside: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def only_here(route: Route) -> None:
        if route.request.url.startswith(keel.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.on("dialog", on_dialog)
    visit.context.route("**/*", only_here)

    visit.goto(f"/posts/{post_id}")
    content = page.locator(".post-content")
    expect(content).to_contain_text("alert(1)")  # shown as text, never run
    assert content.locator("script, img, svg, iframe, [style], [onerror], [onload]").count() == 0
    hrefs = content.locator("a").evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert all(href.startswith("https://") for href in hrefs), hrefs
    # Links are there to follow, not to load: clicking none of them is the reader's choice.
    visit.sign_in(author)
    visit.goto(f"/posts/{post_id}/edit")
    page.get_by_role("tab", name="Preview").click()
    expect(page.get_by_role("tabpanel")).to_contain_text("alert(1)")
    page.wait_for_timeout(300)

    assert dialogs == []
    assert outside == []
    csp = [problem for problem in visit.watch.problems if "Content Security Policy" in problem]
    assert csp == []
    visit.watch.assert_clean()


def open_visit(browser: Browser, keel: Keel, shots: Path, **options: Any) -> Iterator[Visit]:
    context = browser.new_context(**options)
    watch = Watch(context, keel.url)
    try:
        yield Visit(keel=keel, context=context, page=watch.attach(context.new_page()), watch=watch, shots=shots)
    finally:
        context.close()


@pytest.mark.parametrize(
    ("label", "options"),
    [
        ("phone-light", {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}),
        ("phone-dark", {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "color_scheme": "dark"}),
        ("desktop-light", {"viewport": {"width": 1280, "height": 800}}),
        ("desktop-dark", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"}),
    ],
)
def test_the_feed_a_post_the_editor_and_a_tag_page_fit_and_are_captured(
    browser: Browser, keel: Keel, screenshots: Path, label: str, options: dict[str, Any]
) -> None:
    author = keel.register(f"shots_{label.replace('-', '_')}")
    wide = (
        "| "
        + " | ".join(f"column {n}" for n in range(12))
        + " |\n|"
        + "---|" * 12
        + "\n| "
        + " | ".join("x" * 8 for _ in range(12))
        + " |\n"
    )
    post_id = api_post(
        keel,
        author,
        f"A long passage, {label}",
        f"{MARKDOWN}\n{wide}\n" + "Words on the water. " * 60,
        ["sailing", "knots", "weather"],
    )
    first = api_comment(keel, author, post_id, "A comment with `code` and **weight**.")
    api_comment(keel, author, post_id, "A reply under it.", parent_id=first)
    for visit in open_visit(browser, keel, screenshots, **options):
        page = visit.page
        visit.sign_in(author)
        for name, path in [
            ("feed", "/"),
            ("post", f"/posts/{post_id}"),
            ("tag", "/tags/sailing"),
            ("editor", f"/posts/{post_id}/edit"),
        ]:
            visit.goto(path)
            page.locator("main h1").first.wait_for()
            if name == "editor":
                page.get_by_role("tab", name="Preview").click()
                page.get_by_role("tabpanel").locator("table").first.wait_for()
            if name == "post":
                page.locator(".comment").first.wait_for()
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= page.viewport_size["width"], (path, width)  # type: ignore[index]
            visit.screenshot(f"posts-rich-{label}-{name}")
        visit.watch.assert_clean()
