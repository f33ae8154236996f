"""`open_source` reuses a source per process, but never one built from settings that have since changed."""

from __future__ import annotations

from tasks.search import _source, open_source, source_configuration


def test_a_changed_api_key_email_or_url_opens_a_new_entrez_source(lr_home, monkeypatch):
    _source.cache_clear()
    monkeypatch.setenv("LIVING_REVIEW_EUTILS_URL", "http://127.0.0.1:9/eutils/")
    monkeypatch.setenv("NCBI_EMAIL", "a@example.org")
    monkeypatch.setenv("NCBI_API_KEY", "key-one")
    first = open_source("entrez")
    assert open_source("entrez") is first  # unchanged settings: the same source, its rate limiter kept
    assert first.api_key == "key-one"

    monkeypatch.setenv("NCBI_API_KEY", "key-two")
    second = open_source("entrez")
    assert second is not first and second.api_key == "key-two"

    monkeypatch.setenv("NCBI_EMAIL", "b@example.org")
    assert open_source("entrez").email == "b@example.org"

    monkeypatch.setenv("LIVING_REVIEW_EUTILS_URL", "http://127.0.0.1:10/eutils/")
    assert open_source("entrez").base_url.startswith("http://127.0.0.1:10/")
    _source.cache_clear()


def test_the_cache_key_never_holds_the_api_key_itself(lr_home, monkeypatch):
    from living_review.settings import get_settings

    monkeypatch.setenv("NCBI_API_KEY", "very-secret-key")
    key = source_configuration("entrez", get_settings())
    assert "very-secret-key" not in key
    monkeypatch.setenv("NCBI_API_KEY", "another-secret")
    assert source_configuration("entrez", get_settings()) != key
