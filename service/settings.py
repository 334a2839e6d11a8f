"""What an operator sets for a service: the database, the limits and the timings (one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("twin-service")
"""Where ``twin serve`` keeps its SQLite database and scratch space unless told otherwise."""

MAX_UPLOAD_BYTES = 64 * 2**20
"""Largest ONNX file a team may upload (64 MiB: a policy network, not a foundation model)."""

DAILY_SUBMISSIONS = 20
"""Submissions a team may make in any 24 hours."""

HEARTBEAT_SECONDS = 5.0
"""How often a worker says it is alive (and how often an idle worker looks for a job)."""

HEARTBEAT_TIMEOUT = 60.0
"""A running job whose worker has been silent this long is taken back: retried once, then failed."""

MAX_ATTEMPTS = 2
"""A job is run at most this many times (the first run and one retry after a worker died)."""

TOKEN_DAYS = 365.0
"""How long a team's token is valid for (``twin admin add-team --days``)."""


def database_url(db: str | None, home: Path = DEFAULT_HOME) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as given, a file path as SQLite, nothing as the default."""
    if not db:
        return f"sqlite:///{(home / 'service.db').resolve()}"
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).resolve()}"


@dataclass(frozen=True)
class Settings:
    """One service's settings; the server, its workers and ``twin admin`` share the database."""

    db: str
    scratch: Path = DEFAULT_HOME / "scratch"
    """A worker's local folder for the evaluation it runs (the database holds what is kept)."""
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    daily_submissions: int = DAILY_SUBMISSIONS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT
    episode_workers: int = 1
    """Episodes a worker runs at once for its job."""
    videos: int = 1
    """Episode videos per task in a public suite's report (none for private suites)."""
