"""Blind dual screening on /progress: a reviewer's page must not depend on another reviewer's unsettled vote.

The attack: bob includes record R; ann watches /progress while she votes exclude, undoes and votes
include. Were conflicts, settled include/exclude counts, in-progress counts or a pair's kappa shown,
ann would learn bob's vote (conflict after her exclude, kappa 0% vs 100%, ...). Two worlds that differ
only in bob's vote must therefore give ann the same page at every step. (Since both votes are in
once ann has voted, her undo and second vote are refused: tests/web/test_final_votes.py.)
"""

from __future__ import annotations

import re
import shutil

import pytest

from support.web_app import csrf_of, decide, login, make_client

_CSRF_VALUE = re.compile(r'(name="csrf_token" value=")[^"]+(")')
_FULL_TEXT_TILE = re.compile(r'<section class="card tile" id="stage-full_text">.*?</section>', re.S)


def _world(settings_home, template_warehouse, monkeypatch):
    from living_review.config import load_review
    from living_review.settings import get_settings
    from living_review.web.app import create_app

    monkeypatch.setenv("LIVING_REVIEW_HOME", str(settings_home))
    settings = get_settings()
    settings.ensure_dirs()
    shutil.copyfile(template_warehouse, settings.db_path)
    config = load_review(settings.config_path)
    return create_app(settings, config), config


@pytest.fixture
def two_worlds(lr_home, tmp_path, template_warehouse, monkeypatch):
    """Two workspaces over identical copies of the template warehouse (same record ids)."""
    a = _world(lr_home, template_warehouse, monkeypatch)
    b = _world(tmp_path / "world-b", template_warehouse, monkeypatch)
    return a, b


def _normalised(html: str) -> str:
    return _CSRF_VALUE.sub(r"\1-\2", html)


def _ann_through_the_attack(app, config, bob_vote: str) -> list[str]:
    """bob votes on R; ann's /progress before voting, after exclude, after undo, after include."""
    from warehouse.db import connect

    with connect(app.state.settings.db_path) as con:
        rid = int(con.execute("SELECT min(record_id) FROM records").fetchall()[0][0])
    reason = config.screening.exclusion_reasons[0]
    bob = make_client(app)
    bob_csrf = login(bob, "bob")
    assert decide(bob, bob_csrf, rid, bob_vote, reason=reason if bob_vote == "exclude" else None).status_code == 303

    ann = make_client(app)
    csrf = login(ann, "ann")
    pages = []

    def look():
        r = ann.get("/progress")
        assert r.status_code == 200
        pages.append(_normalised(r.text))

    look()
    assert decide(ann, csrf, rid, "exclude", reason=reason).status_code == 303
    look()
    assert ann.post("/undo", data={"csrf_token": csrf, "stage": "title_abstract"}).status_code == 200
    look()
    assert decide(ann, csrf, rid, "include").status_code == 303
    look()
    return pages


def test_a_reviewer_progress_page_does_not_depend_on_the_other_reviewers_vote(two_worlds):
    (app_a, config_a), (app_b, config_b) = two_worlds
    with_include = _ann_through_the_attack(app_a, config_a, "include")
    with_exclude = _ann_through_the_attack(app_b, config_b, "exclude")
    # before her vote, after her exclude, after her (refused) undo and after her (refused) include:
    # the same page whatever bob voted. Before votes were final, her undo went through and her
    # include settled R in one world only, sending it to her full-text queue there.
    for step in range(4):
        assert with_include[step] == with_exclude[step], f"step {step}"
    assert all(_FULL_TEXT_TILE.search(p) for p in with_include + with_exclude)
    for page in with_include + with_exclude:
        for team_figure in ("<dt>Conflicts</dt>", "<dt>Included · excluded</dt>",
                            "<dt>Waiting for another reviewer</dt>", "<dt>Screened (settled)</dt>", "<dt>Remaining</dt>",
                            "Cohen's κ", "ann · bob"):
            assert team_figure not in page
    # ann's own figures are there: her one decision at title/abstract stays once made (the undo is refused)
    ta = [re.search(r'id="stage-title_abstract">.*?</section>', p, re.S).group(0) for p in with_include]
    assert [re.search(r"Your decisions</dt><dd>(\d+)", t).group(1) for t in ta] == ["0", "1", "1", "1"]


def test_a_lead_keeps_the_full_progress_page(two_worlds):
    (app, config), _ = two_worlds
    _ann_through_the_attack(app, config, "include")
    lee = make_client(app)
    login(lee, "lee")
    page = lee.get("/progress").text
    # ann's exclude is final (her undo and include were refused): ann and bob agree on 0 of 1 records
    for team_figure in ("<dt>Conflicts</dt>", "<dt>Included · excluded</dt>", "<dt>Waiting for another reviewer</dt>",
                        "<dt>Screened (settled)</dt>", "Cohen's κ", "ann · bob", "0.0%"):
        assert team_figure in page, team_figure
