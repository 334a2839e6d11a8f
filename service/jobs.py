"""The queue: submissions are jobs in the database, claimed by workers one at a time.

Fair shares: a worker takes the oldest queued job of a team that has no job running, so one
team's burst waits behind the others' single jobs; each team may submit ``daily_submissions``
in any 24 hours. Workers say they are alive (``beat``); a running job whose worker has gone
silent for ``heartbeat_timeout`` is taken back by whoever notices (``reap``): queued again with
its finished episodes kept, once, then failed with the reason.
"""

from __future__ import annotations

import secrets
import statistics
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from service.db import transaction
from service.models import Episode, Submission, Team, Worker, utcnow
from service.settings import MAX_ATTEMPTS, Settings


class LimitReached(Exception):
    """A team over its daily submissions (HTTP 429)."""


def new_id() -> str:
    return secrets.token_hex(16)


def check_quota(session: Session, team: Team, settings: Settings) -> None:
    since = utcnow() - timedelta(days=1)
    made = session.scalar(
        select(func.count()).where(Submission.team_id == team.id, Submission.created > since, ~Submission.reference)
    )
    if made >= settings.daily_submissions:
        first = session.scalar(
            select(func.min(Submission.created)).where(
                Submission.team_id == team.id, Submission.created > since, ~Submission.reference
            )
        )
        raise LimitReached(
            f"team {team.name!r} has made {made} submissions in the last 24 hours, the limit is "
            f"{settings.daily_submissions}; the next is possible at {first + timedelta(days=1):%Y-%m-%d %H:%M} UTC"
        )


def create(
    session: Session,
    team: Team,
    suite: str,
    task: str,
    filename: str,
    data: bytes,
    sha256: str,
    episodes: int,
    reference: bool = False,
) -> Submission:
    sub = Submission(
        id=new_id(),
        team_id=team.id,
        suite=suite,
        task=task,
        filename=filename,
        sha256=sha256,
        size=len(data),
        policy=data,
        reference=reference,
        status="queued",
        created=utcnow(),
        attempts=0,
        episodes_done=0,
        episodes_total=episodes,
    )
    session.add(sub)
    session.flush()
    return sub


def _ahead(session: Session, sub: Submission) -> int:
    return (
        session.scalar(select(func.count()).where(Submission.status == "queued", Submission.created < sub.created)) or 0
    )


def _live_workers(session: Session, settings: Settings) -> int:
    since = utcnow() - timedelta(seconds=settings.heartbeat_timeout)
    return session.scalar(select(func.count()).where(Worker.heartbeat > since)) or 0


def _seconds_per_episode(session: Session) -> float | None:
    recent = session.execute(
        select(Submission.started, Submission.finished, Submission.episodes_total)
        .where(Submission.status == "done", Submission.started.is_not(None), Submission.episodes_total > 0)
        .order_by(Submission.finished.desc())
        .limit(20)
    ).all()
    rates = [(f - s).total_seconds() / n for s, f, n in recent if f and s]
    return statistics.median(rates) if rates else None


def progress(session: Session, sub: Submission, settings: Settings) -> dict[str, Any]:
    """Where a job stands: its place in the queue and estimated start, or its episodes and ETA."""
    out: dict[str, Any] = {
        "status": sub.status,
        "episodes_done": sub.episodes_done,
        "episodes_total": sub.episodes_total,
    }
    per_ep = _seconds_per_episode(session)
    workers = _live_workers(session, settings)
    if sub.status == "queued":
        ahead = _ahead(session, sub)
        out["queue_position"] = ahead + 1
        out["workers_alive"] = workers
        if per_ep is None or workers == 0:
            out["estimated_start"] = None
            out["estimate_note"] = "no worker is running" if workers == 0 else "no job has finished yet to time"
        else:
            waiting = session.execute(
                select(Submission.episodes_total, Submission.episodes_done).where(
                    Submission.status.in_(("queued", "running")),
                    (Submission.status == "running") | (Submission.created < sub.created),
                )
            ).all()
            left = sum(max(t - d, 0) for t, d in waiting)
            out["estimated_start"] = _iso(utcnow() + timedelta(seconds=left * per_ep / workers))
    elif sub.status == "running":
        left = max(sub.episodes_total - sub.episodes_done, 0)
        rate = None
        if sub.started and sub.episodes_done:
            rate = max((utcnow() - sub.started).total_seconds(), 1e-3) / max(sub.episodes_done, 1)
        rate = rate or per_ep
        out["eta"] = _iso(utcnow() + timedelta(seconds=left * rate)) if rate else None
    return out


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(microsecond=0).isoformat() + "Z"


def claim(factory: sessionmaker, worker: str) -> Submission | None:
    """Take the oldest queued job of a team with nothing running, or None."""
    other = aliased(Submission)
    busy = exists().where(and_(other.team_id == Submission.team_id, other.status == "running"))
    with transaction(factory) as s:
        ids = s.scalars(
            select(Submission.id).where(Submission.status == "queued", ~busy).order_by(Submission.created).limit(5)
        ).all()
        for job_id in ids:
            team_id = s.scalar(select(Submission.team_id).where(Submission.id == job_id))
            s.execute(select(Team.id).where(Team.id == team_id).with_for_update())  # PostgreSQL: one claim per team
            now = utcnow()
            got = s.execute(
                update(Submission)
                .where(Submission.id == job_id, Submission.status == "queued", ~busy)
                .values(status="running", worker=worker, started=now, heartbeat=now, attempts=Submission.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if got == 1:
                s.execute(update(Worker).where(Worker.name == worker).values(job=job_id, heartbeat=now))
                return s.get(Submission, job_id)
    return None


def register(factory: sessionmaker, worker: str) -> None:
    with transaction(factory) as s:
        row = s.get(Worker, worker)
        now = utcnow()
        if row is None:
            s.add(Worker(name=worker, started=now, heartbeat=now, job=None))
        else:
            row.started, row.heartbeat, row.job = now, now, None


def beat(factory: sessionmaker, worker: str, job_id: str | None = None, done: int | None = None) -> bool:
    """The worker's sign of life (and its job's); False when the job is no longer this worker's."""
    with transaction(factory) as s:
        now = utcnow()
        s.execute(update(Worker).where(Worker.name == worker).values(heartbeat=now, job=job_id))
        if job_id is None:
            return True
        values: dict[str, Any] = {"heartbeat": now}
        if done is not None:
            values["episodes_done"] = done
        got = s.execute(
            update(Submission)
            .where(Submission.id == job_id, Submission.status == "running", Submission.worker == worker)
            .values(**values)
        ).rowcount
        return got == 1


def keep_episode(factory: sessionmaker, worker: str, job_id: str, row: dict[str, Any]) -> bool:
    """Store a finished episode's row; False (nothing stored) when the job was taken back."""
    with transaction(factory) as s:
        owner = s.scalar(select(Submission.worker).where(Submission.id == job_id, Submission.status == "running"))
        if owner != worker:
            return False
        from agents.evaluation.report import clean

        row = clean([row])[0]  # NaN as null: PostgreSQL's JSON has no NaN
        key = (job_id, row["task"], row["variant"], int(row["seed"]))
        if s.get(Episode, key) is None:
            s.add(
                Episode(submission_id=job_id, task=row["task"], variant=row["variant"], seed=int(row["seed"]), row=row)
            )
        done = s.scalar(select(func.count()).where(Episode.submission_id == job_id))
        s.execute(update(Submission).where(Submission.id == job_id).values(episodes_done=done, heartbeat=utcnow()))
        return True


def episodes(factory: sessionmaker, job_id: str) -> list[dict[str, Any]]:
    with factory() as s:
        return [e.row for e in s.scalars(select(Episode).where(Episode.submission_id == job_id))]


def set_identity(factory: sessionmaker, job_id: str, identity: dict[str, Any], total: int) -> None:
    with transaction(factory) as s:
        s.execute(update(Submission).where(Submission.id == job_id).values(identity=identity, episodes_total=total))


def finish(factory: sessionmaker, worker: str, job_id: str, summary: dict[str, Any], report: bytes) -> bool:
    with transaction(factory) as s:
        note = s.scalar(select(Submission.reason).where(Submission.id == job_id))
        if note and note.startswith("retrying: "):  # what happened on the way, said in the past
            note = "retried once: " + note.removeprefix("retrying: ")
        got = s.execute(
            update(Submission)
            .where(Submission.id == job_id, Submission.status == "running", Submission.worker == worker)
            .values(status="done", summary=summary, report=report, finished=utcnow(), reason=note)
        ).rowcount
        s.execute(update(Worker).where(Worker.name == worker).values(job=None))
        return got == 1


def fail(factory: sessionmaker, job_id: str, reason: str, worker: str | None = None, summary=None) -> bool:
    with transaction(factory) as s:
        cond = [Submission.id == job_id, Submission.status.in_(("queued", "running"))]
        if worker is not None:
            cond.append(Submission.worker == worker)
        got = s.execute(
            update(Submission).where(*cond).values(status="failed", reason=reason, finished=utcnow(), summary=summary)
        ).rowcount
        if worker is not None:
            s.execute(update(Worker).where(Worker.name == worker).values(job=None))
        return got == 1


def release(factory: sessionmaker, worker: str, job_id: str, reason: str) -> None:
    """Put a job this worker was stopped in the middle of back in the queue (not counted as an
    attempt: the worker was stopped, it did not die); its episodes are kept."""
    with transaction(factory) as s:
        s.execute(
            update(Submission)
            .where(Submission.id == job_id, Submission.status == "running", Submission.worker == worker)
            .values(status="queued", worker=None, reason=reason, attempts=Submission.attempts - 1)
        )
        s.execute(update(Worker).where(Worker.name == worker).values(job=None))


def reap(factory: sessionmaker, settings: Settings) -> list[tuple[str, str]]:
    """Take back running jobs whose worker has gone silent: queued again (their episodes kept)
    if they have attempts left, else failed. Returns (job id, what was done) for each."""
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout)
    out = []
    with transaction(factory) as s:
        stale = s.scalars(select(Submission).where(Submission.status == "running", Submission.heartbeat < cutoff)).all()
        for sub in stale:
            silent = f"worker {sub.worker} stopped answering (last heartbeat {sub.heartbeat:%H:%M:%S} UTC)"
            if sub.attempts < MAX_ATTEMPTS:
                sub.status, sub.reason, sub.worker = "queued", f"retrying: {silent}", None
                out.append((sub.id, "requeued"))
            else:
                sub.status, sub.finished = "failed", utcnow()
                sub.reason = f"{silent}, on attempt {sub.attempts} of {MAX_ATTEMPTS}; not retried again"
                out.append((sub.id, "failed"))
    return out
