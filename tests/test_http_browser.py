"""The web pages in a real browser: Debian's Chromium through Playwright (no browser download),
against a live ``tollbook serve`` on the seed data. Screenshots go to TOLLBOOK_ARTIFACTS
(default tests/artifacts/). Skipped, with the reason, where Chromium or Playwright is absent."""

from __future__ import annotations

import os

import pytest
from liveserver import LiveServer, artifacts, cli

from conftest import REVISIONS, SEED

CHROMIUM = "/usr/bin/chromium"
ABDEEN = "sy-2018-09-08-abdeen"
ARDIN = "nv-2024-05-10-ardin-market"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    db = str(folder / "seed.db")
    for path in (SEED, REVISIONS):
        assert cli(db, "--editor", "seeder", "ingest", str(path))[0] == 0
    tokens = {name: cli(db, "token", "create", name, "--role", role)[1].decode().strip()
              for name, role in (("ana", "editor"), ("rita", "reader"))}
    server = LiveServer(db, folder / "serve.log")
    yield server, tokens
    log = server.stop()
    assert not any(token in log for token in tokens.values())


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def signed_in(browser, site, name: str):
    server, tokens = site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{server.url}/incidents/{ABDEEN}")
    assert "/signin" in page.url  # nothing is shown before signing in
    page.fill("#token", tokens[name])
    page.click("#signin")
    page.wait_for_url(f"**/incidents/{ABDEEN}")
    return page


def drawn(page) -> None:
    page.wait_for_selector("body[data-charts-drawn]")


def chart_svg(page, index: int = 0) -> str:
    """What a chart draws: its step lines, bands and marks, and its time axis's labels (Plot's
    generated class names left out: they change with every drawing)."""
    return page.locator("figure.plot").nth(index).evaluate("""figure => [
        ...[...figure.querySelectorAll("svg g[aria-label=line] path, svg g[aria-label=area] path")].map(p => p.getAttribute("d")),
        ...[...figure.querySelectorAll("svg g[aria-label='x-axis tick label'] text, svg g[aria-label='x-axis label'] text")].map(t => t.textContent),
        ...[...figure.querySelectorAll("svg .correction circle, svg .retraction path")].map(c => c.outerHTML)].join("\\n")""")


def test_the_abdeen_page_draws_every_source_and_switches_clocks(browser, site):
    page = signed_in(browser, site, "rita")
    drawn(page)
    figures = page.locator("figure.plot")
    assert figures.count() == 2  # killed / all and killed / children
    for index in range(figures.count()):
        figure = figures.nth(index)
        sources = figure.get_attribute("data-sources").split("|")
        assert sources == ["White Helmets"]
        assert figure.locator("svg .figure-line path").count() == len(sources)
        legend = figure.inner_text()
        assert all(source in legend for source in sources)
    page.screenshot(path=str(artifacts() / "abdeen-published.png"), full_page=True)
    before = chart_svg(page)
    assert page.locator("details.view-published").first.is_visible()
    page.click("#clock-toggle")
    page.wait_for_selector("figure.plot[data-clock=recorded]")
    assert chart_svg(page) != before
    assert "recorded at" in chart_svg(page)
    assert page.locator("details.view-recorded").first.is_visible()
    assert not page.locator("details.view-published").first.is_visible()
    page.screenshot(path=str(artifacts() / "abdeen-recorded.png"), full_page=True)
    page.close()


def test_an_editor_appends_a_correction_and_sees_it(browser, site):
    page = signed_in(browser, site, "ana")
    drawn(page)
    before_chart = chart_svg(page)
    before_rows = page.locator("#history tbody tr").count()
    form = page.locator("#correction-form")
    form.locator("select[name=claim]").select_option(label="White Helmets · killed / all")
    form.locator("input[name=low]").fill("5")
    form.locator("input[name=high]").fill("7")
    form.locator("input[name=reason]").fill("typed 4 for 5-7 (browser test)")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".done")
    drawn(page)
    assert page.locator("#history tbody tr").count() == before_rows + 1
    row = page.locator("#history tbody tr.entry-corrected").last.inner_text()
    assert "typed 4 for 5-7 (browser test)" in row and "ana" in row and "5–7" in row
    assert chart_svg(page) != before_chart
    assert "typed 4 for 5-7" in page.locator("ul.marks").first.inner_text()
    page.screenshot(path=str(artifacts() / "abdeen-after-correction.png"), full_page=True)
    # a reason is required: the browser will not send the form without one
    form = page.locator("#retraction-form")
    form.locator("input[name=published_at]").fill("2018-09-12T08:00:00Z")
    form.locator("button[type=submit]").click()
    assert page.locator("#retraction-form input[name=reason]:invalid").count() == 1
    page.close()


def test_a_reader_sees_no_form_and_cannot_post_one(browser, site):
    page = signed_in(browser, site, "rita")
    drawn(page)
    assert page.locator("#editor-forms").count() == 0
    assert page.locator("form#correction-form").count() == 0
    # even a hand-made form post is refused: a reader's session may not write
    status = page.evaluate("""async (path) => (await fetch(path, {method: "POST",
        headers: {"Content-Type": "application/x-www-form-urlencoded"},
        body: "kind=retraction&reason=x&csrf=x"})).status""", f"/incidents/{ABDEEN}")
    assert status == 403
    page.close()


def test_a_merged_away_id_shows_its_canonical_incident(browser, site):
    server, _ = site
    page = signed_in(browser, site, "rita")
    page.goto(f"{server.url}/incidents/vo-ardin-shelling-0510")
    drawn(page)
    assert ARDIN in page.locator("#merged-note").inner_text()
    killed = page.locator("section.chart", has=page.locator("h2", has_text="killed / all"))
    assert set(killed.locator("figure.plot").get_attribute("data-sources").split("|")) == {
        "Civil Defence", "Valley Health Office", "Valley Observers (under vo-ardin-shelling-0510)"}
    marks = killed.locator("ul.marks").inner_text()
    assert "corrected" in marks and "retracted" in marks and "merged" in marks
    page.screenshot(path=str(artifacts() / "ardin-merged.png"), full_page=True)
    page.click("#clock-toggle")
    page.wait_for_selector("figure.plot[data-clock=recorded]")
    assert killed.locator(".merge line").count() == 1
    page.screenshot(path=str(artifacts() / "ardin-recorded.png"), full_page=True)
    page.goto(f"{server.url}/")
    page.screenshot(path=str(artifacts() / "tally.png"), full_page=True)
    page.close()
