import pytest

from living_review.config import ConfigError, check_query_syntax, load_review
from conftest import REPO


def test_review_toml_loads_with_filters_expanded():
    cfg = load_review(REPO / "review.toml")
    names = [s.name for s in cfg.strategies]
    assert names == ["attachment-rcts", "uk-interventions"]
    rct = cfg.strategy("attachment-rcts")
    assert "{cochrane_hsss}" not in rct.query
    assert "randomized controlled trial[pt]" in rct.query
    assert cfg.outcome("disorganised").measure == "OR"
    assert cfg.screening.reviewers_per_record == 2


@pytest.mark.parametrize("query, message", [
    ('"attachment[tiab]', "quotes"),
    ("(a OR b", "unclosed"),
    ("a) OR (b", "unexpected"),
])
def test_query_syntax_errors_are_named(query, message):
    with pytest.raises(ConfigError, match=message):
        check_query_syntax(query)


def test_unknown_filter_fails_at_load(tmp_path):
    text = (REPO / "review.toml").read_text().replace("AND {cochrane_hsss}", "AND {no_such_filter}")
    p = tmp_path / "review.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match="no_such_filter"):
        load_review(p)


def test_vocabulary_is_loaded():
    cfg = load_review(REPO / "review.toml")
    assert "ABC" in cfg.interventions and "VIPP-SD" in cfg.interventions
    assert "SSP" in cfg.attachment_measures
    assert "interventions" not in cfg.ranking.model_dump()
