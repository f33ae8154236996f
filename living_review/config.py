"""The review's configuration (review.toml) as typed objects.

Strategies are checked for balanced parentheses and quotes and for unknown {filter} names when the
file is loaded, so a typo fails at start-up rather than as a silent zero-hit search at 02:00.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator


class ConfigError(ValueError):
    """The review configuration is unusable; the message says where."""


class Question(BaseModel):
    population: str
    intervention: str
    comparator: str
    outcomes: str
    designs: str = ""

    def text(self) -> str:
        return " ".join([self.population, self.intervention, self.comparator, self.outcomes])


class Strategy(BaseModel):
    name: str
    description: str = ""
    query: str  # with {filter} references expanded by load_review
    start_date: date
    overlap_days: int = Field(default=7, ge=0, le=365)

    @model_validator(mode="before")
    @classmethod
    def _no_schedule(cls, data):
        # Every strategy is searched by the one nightly-update deployment, on prefect.yaml's cron;
        # a per-strategy schedule would be read by nothing, so it is refused rather than ignored.
        if isinstance(data, dict) and "schedule" in data:
            raise ValueError(
                f"strategy {data.get('name')!r}: 'schedule' is not supported: every strategy runs in the "
                "nightly-update deployment, scheduled by the cron in prefect.yaml; remove the line")
        return data

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", v):
            raise ValueError(f"strategy name {v!r} must be a lower-case slug")
        return v


class Screening(BaseModel):
    stages: list[str] = ["title_abstract", "full_text"]
    reviewers_per_record: int = Field(default=2, ge=1, le=5)
    exclusion_reasons: list[str]
    highlight_terms: list[str] = []


class Ranking(BaseModel):
    seed_pmids: list[str] = []
    audit_fraction: float = Field(default=0.05, ge=0, le=1)
    recall_target: float = Field(default=0.95, gt=0, le=1)
    confidence: float = Field(default=0.95, gt=0, lt=1)


class Outcome(BaseModel):
    name: str
    label: str
    kind: Literal["binary", "continuous"]
    measure: str


class PrimaryAnalysis(BaseModel):
    method: str = "REML"
    test: str = "knha"
    prediction_interval: bool = True


class SensitivityAnalysis(BaseModel):
    name: str
    method: str
    test: str = "z"


class Pooling(BaseModel):
    alpha: float = Field(default=0.05, gt=0, lt=1)
    primary: PrimaryAnalysis = PrimaryAnalysis()
    sensitivity: list[SensitivityAnalysis] = []
    subgroups: list[str] = []


class ReviewConfig(BaseModel):
    title: str
    seed: str = ""
    question: Question
    strategies: list[Strategy]
    screening: Screening
    ranking: Ranking = Ranking()
    interventions: list[str] = Field(min_length=1)
    attachment_measures: list[str] = []
    outcomes: list[Outcome]
    pooling: Pooling = Pooling()
    source_path: Path | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> "ReviewConfig":
        for what, names in (("strategy", [s.name for s in self.strategies]), ("outcome", [o.name for o in self.outcomes])):
            dupes = {n for n in names if names.count(n) > 1}
            if dupes:
                raise ValueError(f"duplicate {what} names: {sorted(dupes)}")
        return self

    def strategy(self, name: str) -> Strategy:
        for s in self.strategies:
            if s.name == name:
                return s
        raise ConfigError(f"no strategy named {name!r}; known: {[s.name for s in self.strategies]}")

    def outcome(self, name: str) -> Outcome:
        for o in self.outcomes:
            if o.name == name:
                return o
        raise ConfigError(f"no outcome named {name!r}; known: {[o.name for o in self.outcomes]}")


def check_query_syntax(query: str) -> None:
    """Raise ConfigError for unbalanced quotes or parentheses (PubMed would mis-parse them silently)."""
    if query.count('"') % 2:
        raise ConfigError("unbalanced double quotes")
    depth = 0
    in_quote = False
    for i, ch in enumerate(query):
        if ch == '"':
            in_quote = not in_quote
        elif not in_quote and ch == "(":
            depth += 1
        elif not in_quote and ch == ")":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unexpected ')' at character {i}")
    if depth:
        raise ConfigError(f"{depth} unclosed '('")


def _expand_filters(query: str, filters: dict[str, str], strategy: str) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in filters:
            raise ConfigError(f"strategy {strategy!r} uses unknown filter {{{name}}}; known: {sorted(filters)}")
        return filters[name]

    return " ".join(re.sub(r"\{([A-Za-z0-9_]+)\}", sub, query).split())


def load_review(path: str | Path | None = None) -> ReviewConfig:
    """Load and validate review.toml (default: the settings' config path)."""
    if path is None:
        from living_review.settings import get_settings

        path = get_settings().config_path
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"review configuration not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    review = raw.get("review", {})
    filters = raw.get("filters", {})
    strategies = []
    for s in raw.get("strategies", []):
        s = dict(s)
        s["query"] = _expand_filters(s.get("query", ""), filters, s.get("name", "?"))
        try:
            check_query_syntax(s["query"])
        except ConfigError as exc:
            raise ConfigError(f"{path}: strategy {s.get('name')!r}: {exc}") from None
        strategies.append(s)
    data = {
        "title": review.get("title", ""),
        "seed": review.get("seed", ""),
        "question": review.get("question", {}),
        "strategies": strategies,
        "screening": raw.get("screening", {}),
        "ranking": raw.get("ranking", {}),
        "interventions": raw.get("vocabulary", {}).get("interventions", []),
        "attachment_measures": raw.get("vocabulary", {}).get("attachment_measures", []),
        "outcomes": raw.get("outcomes", []),
        "pooling": raw.get("pooling", {}),
        "source_path": path,
    }
    try:
        return ReviewConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
