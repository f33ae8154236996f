"""A workspace over a small real warehouse: six fixture records appended by one nightly run.

The warehouse is built once per session (a nightly-style append costs about a second) and copied
into each test's fresh LIVING_REVIEW_HOME.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.web_app import add_reviewer, build_known_warehouse, fixture_records, nightly_append, record_ids_by_pmid


@dataclass
class Workspace:
    app: object
    db: Path
    ids: dict[str, int]  # pmid -> record_id
    settings: object
    config: object

    def flush(self) -> None:
        """Write journalled decisions to the warehouse now (the app does it at its next lock turn)."""
        self.app.state.journal.flush()


@pytest.fixture(scope="session")
def template_warehouse(tmp_path_factory) -> Path:
    from warehouse.db import migrate

    db = tmp_path_factory.mktemp("web-template") / "warehouse.duckdb"
    migrate(db)
    nightly_append(db, {"attachment-rcts": fixture_records()})
    for name, role in (("ann", "reviewer"), ("bob", "reviewer"), ("lee", "lead")):
        add_reviewer(db, name, role)
    return db


@pytest.fixture
def ws(lr_home, template_warehouse) -> Workspace:
    from living_review.config import load_review
    from living_review.settings import get_settings
    from living_review.web.app import create_app

    settings = get_settings()
    settings.ensure_dirs()
    shutil.copyfile(template_warehouse, settings.db_path)
    config = load_review(settings.config_path)
    return Workspace(create_app(settings, config), settings.db_path, record_ids_by_pmid(settings.db_path), settings, config)


@pytest.fixture(scope="module")
def known_template(tmp_path_factory):
    """A warehouse with known decisions and outcome data (`build_known_warehouse`), built once per module."""
    db = tmp_path_factory.mktemp("known-web") / "warehouse.duckdb"
    r = build_known_warehouse(db)
    for name, role in (("ann", "reviewer"), ("bob", "reviewer"), ("lee", "lead")):
        add_reviewer(db, name, role)
    return db, r


@pytest.fixture
def known_ws(lr_home, known_template):
    """(app, known values, settings) over a fresh copy of `known_template`."""
    from living_review.settings import get_settings
    from living_review.web.app import create_app

    settings = get_settings()
    settings.ensure_dirs()
    shutil.copyfile(known_template[0], settings.db_path)
    return create_app(settings), known_template[1], settings
