"""The service's database tables (SQLAlchemy); ``migrations/`` creates and upgrades them.

Times are naive UTC (:func:`utcnow`), the same on SQLite and PostgreSQL. Policies and reports are
stored in the database, not on a disk, so workers on other machines need only ``--db``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

STATUSES = ("queued", "running", "done", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Team(Base):
    """A team (or the organiser); only the SHA-256 of its token is stored."""

    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="team")
    """``team`` or ``organiser`` (may add suites, sees every job's state)."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    token_expires: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Suite(Base):
    """A suite added by the organiser; a private one's seeds never leave the server."""

    __tablename__ = "suites"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    private: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(Text)
    """The suite's TOML, as the organiser gave it."""
    digest: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Submission(Base):
    """One uploaded policy evaluated on one task of one suite: a job in the queue."""

    __tablename__ = "submissions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Random (128 bits): not guessable, not counting."""
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    suite: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(200))
    """The uploaded file's name, for display only (never a path on the server)."""
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    policy: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    reference: Mapped[bool] = mapped_column(Boolean, default=False)
    """The scripted expert's run: the leaderboard's reference row, not a team's entry."""
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why it failed; or, while queued again, why it was retried."""
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    episodes_done: Mapped[int] = mapped_column(Integer, default=0)
    episodes_total: Mapped[int] = mapped_column(Integer, default=0)
    identity: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The evaluation's ``run.json``: what a worker elsewhere resumes."""
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """When done: the aggregates per variant and the robustness ratios (what the leaderboard ranks)."""
    report: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, nullable=True))
    """When done: the scorecard report (HTML), as the team may see it."""


class Episode(Base):
    """A finished episode's row, kept as it ends: a retried job runs only the others."""

    __tablename__ = "episodes"
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    variant: Mapped[str] = mapped_column(String(200), primary_key=True)
    seed: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # seeds reach 2**32 - 1
    row: Mapped[dict[str, Any]] = mapped_column(JSON)


class Worker(Base):
    """A worker process and its last sign of life."""

    __tablename__ = "workers"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    started: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    job: Mapped[str | None] = mapped_column(String(32), nullable=True)
