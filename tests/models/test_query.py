"""Local PubMed query evaluator: operators left to right, field tags, phrases, truncation, errors.

Field behaviour is checked on real records (tests/fixtures/pubmed and the bundled records.csv);
the pure boolean-algebra checks use tiny records whose titles are single letters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from living_review.config import load_review
from living_review.sources.snapshot import read_citations
from models.pubmed import iter_records
from models.query import Document, QuerySyntaxError, compile_query, matches, normalise_text
from models.records import Record

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures" / "pubmed"
REPO = TESTS.parent
CITATIONS = REPO / "living_review" / "snapshot" / "records.csv"


@pytest.fixture(scope="module")
def fixture_records() -> dict[str, Record]:
    return {r.pmid: r for path in sorted(FIXTURES.glob("*.xml")) for r in iter_records(path)}


@pytest.fixture(scope="module")
def citations() -> list[Record]:
    return list(read_citations(CITATIONS))


def hits(query: str, records) -> set[str]:
    compiled = compile_query(query)
    return {r.pmid for r in (records.values() if isinstance(records, dict) else records) if compiled.matches(r)}


# -- boolean algebra --------------------------------------------------------------------------


def letters(*words: str) -> Record:
    return Record(pmid="1", title=" ".join(words))


@pytest.mark.parametrize(
    "query, title, expected",
    [
        ("p OR q AND r", "p", False),  # (p OR q) AND r: PubMed reads left to right
        ("p OR q AND r", "p r", True),
        ("p OR (q AND r)", "p", True),
        ("p AND q OR r", "r", True),  # (p AND q) OR r
        ("p NOT q OR r", "p q r", True),  # (p NOT q) OR r
        ("p NOT q OR r", "p q", False),
        ("p NOT (q OR r)", "p r", False),
        ("p NOT q NOT r", "p r", False),
        ("p NOT q NOT r", "p", True),
        ("p q", "p q", True),  # adjacency = AND
        ("p q", "q", False),
        ("(p OR q) (r OR s)", "q s", True),
        ("p and q", "q p", True),  # lower-case 'and' is a stopword, not an operator
        ("p and q", "p", False),
        ("((p))", "p", True),
    ],
)
def test_operators_apply_left_to_right(query, title, expected):
    assert matches(query, letters(title)) is expected


# -- fields on real records ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ('"flavocytochrome c552"[tiab]', {"9997"}),
        ("flavocytochrome[ti]", {"9997"}),
        ("paramagnetic[ab]", {"9997"}),
        ("paramagnetic[ti]", set()),
        ('"heme-flavin interaction"[ti]', {"9997"}),  # hyphen = phrase of two words
        ("heme flavin interaction[tiab]", {"9997"}),  # unquoted multi-word before a tag: phrase
        ("chromat*[tiab]", {"9997"}),
        ('"magnetic stud*"[ti]', {"9997"}),
        ("Chromatium[mh]", {"9997"}),
        ("Chromatium[mh] AND enzymology[sh]", {"9997"}),
        ("Chromatium[majr]", {"9997"}),  # major through its qualifier
        ("Iron[majr]", set()),
        ('"Acquired Immunodeficiency Syndrome"[majr]', {"12091962"}),
        ("review[pt]", {"12091962", "20301577"}),
        ("randomized controlled trial[pt]", {"23435529"}),
        ("clinical trial[pt]", {"23435529"}),  # trial types explode to RCTs
        ("Olivero JM[au]", {"12091962"}),
        ("Olivero J[au]", {"12091962"}),
        ("olivero[au]", {"12091962"}),
        ("Oliver[au]", set()),
        ("Soc Justice[ta]", {"12091962"}),
        ("1990[dp]", {"12091962"}),
        ("1975:1976[dp]", {"9997"}),
        ("2019/03/01:2019/03/31[crdt]", {"30849835"}),  # create date, not the entry date
        ("1999/06[edat]", {"30849835"}),
        ("9997[pmid]", {"9997"}),
        ("english[la] AND 1976[dp]", {"9997"}),
        ("eng[la] AND 1976[dp]", {"9997"}),
        ('"Legal Approach"[ot]', {"12091962"}),
        ('"legal approach"[tiab]', {"12091962"}),  # [tiab] includes author keywords
        ("telomere[all] AND pancreatic", {"27797938"}),
        ("TERT[ti]", {"27797938"}),  # inline <i>TERT</i> flattened
        ("CACNA1C-Related[ti]", {"20301577"}),
        ("Humans[mh] AND Prisoners[mh:noexp]", {"12091962"}),
    ],
)
def test_field_tags_on_real_records(fixture_records, query, expected):
    assert hits(query, fixture_records) == expected


def test_mesh_explosion_approximation_follows_comma_names():
    record = Record(pmid="1", mesh=["Child, Preschool", "Infant, Newborn", "Child Behavior"])
    assert matches('"Child"[mh]', record)  # Child, Preschool is under Child
    assert matches('"Infant"[mh]', record)
    assert not matches('"Child"[mh:noexp]', record)
    assert not matches('"Behavior"[mh]', record)  # "Child Behavior" is not "Behavior, …"


def test_accents_and_case_are_folded():
    record = Record(pmid="1", title="Évaluation of naïve MOTHERS' sensitivity")
    assert matches("evaluation[ti] AND naive[ti] AND mothers[ti]", record)
    assert normalise_text("Œuvre — naïve") == "oeuvre naive"


def test_untagged_terms_search_all_fields(fixture_records):
    assert hits("Strekas", fixture_records) == {"9997"}  # author
    assert hits("Enzymology", fixture_records) == {"9997"}  # MeSH qualifier
    assert hits('"Biochim Biophys Acta"', fixture_records) == {"9997"}  # journal


# -- the review's real strategies ---------------------------------------------------------------


def test_review_strategies_on_real_topical_citations(citations, fixture_records):
    strategies = {s.name: compile_query(s.query) for s in load_review(REPO / "review.toml").strategies}
    rcts = {r.pmid for r in citations if strategies["attachment-rcts"].matches(r)}
    uk = {r.pmid for r in citations if strategies["uk-interventions"].matches(r)}
    # Titles only (records.csv has no abstracts or MeSH), so only titles naming every concept match.
    assert rcts == {"22065891", "19323672", "17154730"}
    assert uk == {"38790505", "33709328", "17154732", "16292115", "11707882", "10834766"}
    # none of the (off-topic) fixture articles is selected
    assert not any(q.matches(r) for q in strategies.values() for r in fixture_records.values())


def test_cochrane_filter_selects_the_real_rcts(fixture_records):
    hsss = load_review(REPO / "review.toml").strategies[0].query.split("AND ((randomized controlled trial[pt]")[1]
    query = "((randomized controlled trial[pt]" + hsss
    selected = hits(query, fixture_records)
    assert "23435529" in selected  # Randomized Controlled Trial [pt]
    assert "12091962" not in selected  # a policy review


def test_documents_are_reused_across_queries(fixture_records):
    doc = Document(fixture_records["9997"])
    assert compile_query("chromat*[tiab]").matches(doc)
    cached = doc.tiab
    assert compile_query('"heme iron"[tiab]').matches(doc)
    assert doc.tiab is cached
    assert [r.pmid for r in compile_query("Iron[mh]").filter([doc])] == ["9997"]


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "empty query"),
        ("   ", "empty query"),
        ("(a OR b", "unclosed '\\('"),
        ("a OR b)", "unexpected '\\)'"),
        ('"strange situation[tiab]', "unclosed quote"),
        ('""[tiab]', "empty phrase"),
        ("attachment[foo]", "unknown field tag \\[foo\\]"),
        ("attachment[tiab", "unclosed '\\['"),
        ("[tiab]", "field tag without a term"),
        ("a AND", "nothing on its right"),
        ("OR a", "nothing on its left"),
        ("NOT a", "nothing on its left"),
        ("a AND OR b", "nothing on its left"),
        ("()", "empty parentheses"),
        ("*[tiab]", "needs a word stem"),
        ("pa*rent[tiab]", "only allowed at the end"),
        ("20x9[dp]", "bad date"),
        ("pubmed pmc[sb]", "cannot be evaluated offline"),
        ("a ] b", "unexpected '\\]'"),
    ],
)
def test_bad_queries_raise_clear_errors(query, message):
    with pytest.raises(QuerySyntaxError, match=message):
        compile_query(query)


def test_query_syntax_error_is_a_value_error():
    assert issubclass(QuerySyntaxError, ValueError)


@pytest.mark.parametrize(
    "query, expected",
    [
        ('"magnetic chromatium"[ti:~2]', True),  # "Magnetic studies of Chromatium": two words between
        ('"magnetic chromatium"[ti:~1]', False),
        ('"chromatium magnetic"[ti:~2]', True),  # any order
        ('"heme interaction"[tiab:~5]', True),
        ('"paramagnetic heme"[ab:~0]', False),
        ('"magnetic nowhere"[ti:~9]', False),
    ],
)
def test_proximity_search(fixture_records, query, expected):
    assert compile_query(query).matches(fixture_records["9997"]) is expected


@pytest.mark.parametrize("query", ['"magnetic"[ti:~2]', '"magnet* studies"[ti:~2]', '"a b"[mh:~2]'])
def test_bad_proximity_queries(query):
    with pytest.raises(QuerySyntaxError):
        compile_query(query)
