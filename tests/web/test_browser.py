"""The workspace in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Log in; screen three records with the keyboard; a second reviewer disagrees and the lead
resolves; enter outcome data with one invalid field corrected; see the forest plot and the PRISMA
diagram change. Screenshots go to tests/artifacts/browser/ (git-ignored).

The pooled evidence starts from three of the invented trials in tests/fixtures/pooling (labelled
"synthetic"); the outcome numbers typed in the browser are test inputs for an invented study
labelled "(synthetic)" too. Nothing here is evidence.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from support.live_server import live_server
from support.web_app import PASSWORD, add_reviewer, fixture_records, nightly_append

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
POOLING_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pooling"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian Chromium is not installed at /usr/bin/chromium "
                       "(apt-get install chromium); Playwright's own browser download cannot work offline"),
]


def _preload_synthetic_evidence(db, config, n: int = 3):
    """Three invented trials (tests/fixtures/pooling, 'synthetic' in their labels) pooled once."""
    from living_review.pooling import refresh_pooled_effects_now
    from warehouse import evidence
    from warehouse.db import transaction

    studies = list(csv.DictReader(open(POOLING_FIXTURES / "synthetic_studies.csv")))[:n]
    ids = {s["study_id"] for s in studies}
    outcomes = [r for r in csv.DictReader(open(POOLING_FIXTURES / "synthetic_outcomes.csv")) if r["study_id"] in ids]
    with transaction(db) as con:
        for s in studies:
            s = {**s, "intervention": "VIPP" if s["intervention"] == "video_feedback" else "Other"}
            evidence.save_study(con, s, config, created_by="fixture")
        evidence.save_outcomes(con, outcomes, config, entered_by="fixture", source="fixture")
    refresh_pooled_effects_now(db_path=db, config=config, trigger="test")


def _decisions(db, sql="SELECT reviewer, record_id, stage, decision, reason, is_resolution FROM screening_decisions "
                       "ORDER BY decision_id"):
    from warehouse.db import connect

    with connect(db) as con:
        return con.execute(sql).fetchall()


def test_review_in_the_browser(lr_home):
    from playwright.sync_api import expect, sync_playwright

    from living_review.config import load_review
    from living_review.settings import get_settings
    from warehouse.db import migrate

    settings = get_settings()
    settings.ensure_dirs()
    db = settings.db_path
    config = load_review(settings.config_path)
    migrate(db)
    nightly_append(db, {"attachment-rcts": fixture_records()})
    for name, role in (("ann", "reviewer"), ("bob", "reviewer"), ("lee", "lead")):
        add_reviewer(db, name, role)
    _preload_synthetic_evidence(db, config)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()

    with live_server(lr_home, lr_home / "server.log") as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)

        def session(name):
            ctx = browser.new_context(viewport={"width": 1200, "height": 900})
            page = ctx.new_page()
            page.goto(base + "/screen")
            expect(page).to_have_url(re.compile(r"/login"))
            if name == "ann":
                shot(page, "00-login", full_page=False)
            page.fill("input[name=name]", name)
            page.fill("input[name=password]", PASSWORD)
            with page.expect_navigation():
                page.click("button[type=submit]")
            expect(page.locator("header .who")).to_contain_text(name)
            return page

        def shot(page, name, full_page=True):
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

        def shown_record(page) -> int:
            return int(page.locator("#record").get_attribute("data-record-id"))

        def key(page, *keys):
            """Press keys; the last one posts the form (wait for the next page)."""
            for k in keys[:-1]:
                page.keyboard.press(k)
            with page.expect_navigation():
                page.keyboard.press(keys[-1])

        # --- ann logs in and screens three records with the keyboard: i, e then 2, i
        ann = session("ann")
        ann.goto(base + "/prisma")
        prisma_before = ann.locator("#prisma-cumulative svg").inner_html()
        shot(ann, "01-prisma-before")
        ann.goto(base + "/screen")
        shot(ann, "02-screen-first-record", full_page=False)  # as the reviewer sees it
        a_rec = shown_record(ann)
        key(ann, "i")
        b_rec = shown_record(ann)
        ann.keyboard.press("e")
        expect(ann.locator("#reasons")).to_be_visible()
        shot(ann, "03-exclude-reasons", full_page=False)
        with ann.expect_navigation():
            ann.keyboard.press("2")
        c_rec = shown_record(ann)
        key(ann, "i")
        assert len({a_rec, b_rec, c_rec}) == 3
        second = config.screening.exclusion_reasons[1]
        assert _decisions(db) == [("ann", a_rec, "title_abstract", "include", None, False),
                                  ("ann", b_rec, "title_abstract", "exclude", second, False),
                                  ("ann", c_rec, "title_abstract", "include", None, False)]
        # undo with u brings the last record back; include it again
        with ann.expect_navigation():
            ann.keyboard.press("u")
        assert shown_record(ann) == c_rec
        key(ann, "i")

        # --- bob screens the same records blind, and disagrees on the first
        bob = session("bob")
        assert shown_record(bob) == a_rec
        assert bob.locator("table.votes, .d.include").count() == 0  # blind: nothing of ann's decision
        key(bob, "e", "1")
        assert shown_record(bob) == b_rec
        key(bob, "e", "2")
        key(bob, "i")

        # --- the lead resolves the conflict
        lee = session("lee")
        lee.goto(base + "/conflicts")
        card = lee.locator(f"#conflict-title_abstract-{a_rec}")
        expect(card).to_contain_text(config.screening.exclusion_reasons[0])
        shot(lee, "04-conflict")
        with lee.expect_navigation():
            card.locator("button[value=include]").click()
        expect(lee.locator(".flash")).to_contain_text("resolved")
        expect(lee.locator(f"#conflict-title_abstract-{a_rec}")).to_have_count(0)

        # --- both reviewers include the two passed records at full text (keyboard again)
        for page in (ann, bob):
            page.goto(base + "/screen?stage=full_text")
            seen = set()
            while page.locator("#record").count():
                seen.add(shown_record(page))
                key(page, "i")
            assert seen == {a_rec, c_rec}
        shot(ann, "05-full-text-done")

        # --- extraction: one invalid field, corrected
        ann.goto(base + "/extract")
        shot(ann, "06-extract-list")
        with ann.expect_navigation():
            ann.click(f"a[href='/extract/{c_rec}']")
        ann.fill("input[name='study.study_id']", "browser-test-study")
        ann.fill("input[name='study.label']", "Browser test study (synthetic)")
        ann.select_option("select[name='study.intervention']", "VIPP")
        ann.select_option("select[name='study.attachment_measure']", "SSP")
        for field, value in (("events_int", "45"), ("n_int", "40"), ("events_ctl", "20"), ("n_ctl", "40")):
            ann.fill(f"input[name='secure.{field}']", value)
        with ann.expect_navigation():
            ann.click("button.primary")
        error = ann.locator("#err-secure-events_int")
        expect(error).to_contain_text("exceed")
        shot(ann, "07-extract-error")
        ann.fill("input[name='secure.events_int']", "34")
        with ann.expect_navigation():
            ann.click("button.primary")
        expect(ann.locator(".flash")).to_contain_text("Saved browser-test-study")
        shot(ann, "08-extract-saved")

        # --- the forest plot and the PRISMA diagram changed
        ann.goto(base + "/results")
        secure = ann.locator("#outcome-secure")
        expect(secure).to_be_visible()
        img = secure.locator("img.plot").first
        expect(img).to_be_visible()
        img.scroll_into_view_if_needed()
        ann.wait_for_function("(img) => img.complete && img.naturalWidth > 100", arg=img.element_handle())
        shot(ann, "09-results")
        from warehouse.db import connect
        from warehouse.pooling import latest_pooled_results

        with connect(db) as con:
            latest = [r for r in latest_pooled_results(con) if r["outcome"] == "secure" and not r["subgroup"]]
        assert latest and max(r["k"] for r in latest) == 4 and latest[0]["evidence_version"] == 2
        assert "/v2/" in (img.get_attribute("src") or "") or "v2" in (img.get_attribute("src") or "")
        ann.goto(base + "/prisma")
        prisma_after = ann.locator("#prisma-cumulative svg").inner_html()
        shot(ann, "10-prisma-after")
        assert prisma_before != prisma_after
        assert "Studies included in review (n = 0)" in prisma_before
        assert "Studies included in review (n = 2)" in prisma_after
        assert "Records excluded (n = 1)" in prisma_after
        lee.goto(base + "/progress")
        expect(lee.locator("#nightly")).to_contain_text("completed")
        shot(lee, "11-progress")

        # --- one record's history: the lead sees both votes and the resolution, a reviewer only their own
        lee.goto(base + f"/records/{a_rec}")
        history = lee.locator("#decisions")
        for who in ("ann", "bob", "lee"):
            expect(history).to_contain_text(who)
        expect(history.locator(".tag", has_text="resolution")).to_have_count(1)
        shot(lee, "12-record-history-lead", full_page=True)
        bob.goto(base + f"/records/{a_rec}")
        history = bob.locator("#decisions")
        expect(history).to_contain_text("bob")
        expect(history).not_to_contain_text("ann")
        expect(history.locator(".tag", has_text="resolution")).to_have_count(0)
        shot(bob, "13-record-history-reviewer")
        browser.close()
