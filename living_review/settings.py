"""The one settings module: where data lives and how to reach NCBI.

Read from the environment and an optional `.env` file. The API key is a SecretStr so that it never
appears in a repr, a log line or a stored run record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
NCBI_EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"


def _default_config_path() -> Path:
    local = Path.cwd() / "review.toml"
    return local if local.exists() else REPO_ROOT / "review.toml"


class Settings(BaseSettings):
    # No populate_by_name: it would let the field name match too, so $HOME would set `home`.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / "data", validation_alias="LIVING_REVIEW_HOME")
    eutils_url: str = Field(default=NCBI_EUTILS_URL, validation_alias="LIVING_REVIEW_EUTILS_URL")
    ncbi_email: str | None = Field(default=None, validation_alias="NCBI_EMAIL")
    ncbi_api_key: SecretStr | None = Field(default=None, validation_alias="NCBI_API_KEY")
    config_path: Path = Field(default_factory=_default_config_path, validation_alias="LIVING_REVIEW_CONFIG")
    fetch_batch_size: int = Field(default=500, ge=1, le=10_000, validation_alias="LIVING_REVIEW_FETCH_BATCH")
    task_retries: int = Field(default=2, ge=0, le=10, validation_alias="LIVING_REVIEW_TASK_RETRIES")
    task_retry_delay_seconds: float = Field(default=30.0, ge=0, validation_alias="LIVING_REVIEW_TASK_RETRY_DELAY")
    snapshot_dir: Path = Field(
        default=REPO_ROOT / "living_review" / "snapshot", validation_alias="LIVING_REVIEW_SNAPSHOT_DIR"
    )
    # Login rate limiting (living_review/web/throttle.py): after this many failed logins within the
    # window, further attempts for that reviewer name, or from that client address, get HTTP 429.
    login_max_failures: int = Field(default=5, ge=1, le=1000, validation_alias="LIVING_REVIEW_LOGIN_MAX_FAILURES")
    login_max_failures_per_address: int = Field(
        default=5, ge=1, le=100_000, validation_alias="LIVING_REVIEW_LOGIN_MAX_FAILURES_PER_ADDRESS"
    )
    login_window_seconds: int = Field(default=900, ge=1, le=7 * 86_400, validation_alias="LIVING_REVIEW_LOGIN_WINDOW")
    # Notifications (living_review/notify.py): the saved Prefect notification block to send through,
    # as "<block-type-slug>/<block-name>" (e.g. "slack-webhook/review-team"); unset = no notifications.
    notify_block: str | None = Field(default=None, validation_alias="LIVING_REVIEW_NOTIFY_BLOCK")
    # Also send a one-line digest after every successful nightly run (off by default).
    notify_success: bool = Field(default=False, validation_alias="LIVING_REVIEW_NOTIFY_SUCCESS")
    # The default of `living-review nightly --source` ("entrez" or "snapshot"). Read as given and checked
    # by that command (living_review/commands/nightly.py), so a bad value fails it alone, with a clear error.
    nightly_source: str = Field(default="snapshot", validation_alias="LIVING_REVIEW_SOURCE")

    @field_validator("notify_block", "nightly_source", mode="before")
    @classmethod
    def _blank_is_default(cls, value):
        """Surrounding blanks are dropped; a blank value means the field's default (unset)."""
        if isinstance(value, str):
            if not value.strip():
                raise PydanticUseDefault()
            return value.strip()
        return value

    @property
    def db_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.models_dir, self.reports_dir):
            d.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    """Settings read afresh from the environment (cheap; tests and sub-processes change it)."""
    return Settings()


_API_KEY_PARAM = re.compile(r"(api_key=)[^&\s\"'<>]+", re.IGNORECASE)


def scrub_secrets(text: object, secrets: Iterable[str | None] = ()) -> str:
    """`text` without api_key=… query parameters and without any of the given secret values: the one
    rule for everything that leaves the process (Entrez errors, notifications, their log lines)."""
    text = _API_KEY_PARAM.sub(r"\1***", str(text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
