from pathlib import Path

from living_review.settings import NCBI_EUTILS_URL, get_settings


def test_defaults_ignore_unrelated_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/somewhere/else")  # must not be taken for LIVING_REVIEW_HOME
    for name in ("LIVING_REVIEW_HOME", "LIVING_REVIEW_EUTILS_URL", "NCBI_API_KEY", "LIVING_REVIEW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    s = get_settings()
    assert s.home == tmp_path / "data"
    assert s.db_path == tmp_path / "data" / "warehouse.duckdb"
    assert s.eutils_url == NCBI_EUTILS_URL
    assert s.ncbi_api_key is None


def test_contract_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("LIVING_REVIEW_EUTILS_URL", "http://127.0.0.1:9/entrez/eutils/")
    monkeypatch.setenv("NCBI_EMAIL", "a@example.org")
    monkeypatch.setenv("NCBI_API_KEY", "sekret-key-123")
    s = get_settings()
    assert s.home == Path(tmp_path / "h")
    assert s.eutils_url == "http://127.0.0.1:9/entrez/eutils/"
    assert s.ncbi_email == "a@example.org"
    assert s.ncbi_api_key.get_secret_value() == "sekret-key-123"
    assert "sekret-key-123" not in repr(s) and "sekret-key-123" not in str(s.model_dump())


def test_living_review_source_default_and_environment(monkeypatch):
    monkeypatch.delenv("LIVING_REVIEW_SOURCE", raising=False)
    assert get_settings().nightly_source == "snapshot"
    monkeypatch.setenv("LIVING_REVIEW_SOURCE", "entrez")
    assert get_settings().nightly_source == "entrez"
    monkeypatch.setenv("LIVING_REVIEW_SOURCE", "  ")
    assert get_settings().nightly_source == "snapshot"  # blank means unset
    monkeypatch.setenv("LIVING_REVIEW_SOURCE", "Entrez")
    assert get_settings().nightly_source == "Entrez"  # read as given: `living-review nightly` refuses it, nothing else fails
