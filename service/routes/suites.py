"""``/api/suites``: the suites on offer (public), and adding one (the organiser)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import select

from service import jobs
from service.auth import bearer, team_for
from service.models import Submission, Team
from service.routes.deps import SessionDep, SettingsDep, organiser
from service.routes.submissions import ensure_reference
from service.suites import add, describe

router = APIRouter(prefix="/api", tags=["suites"])

MAX_SUITE_BYTES = 2**20


@router.get("/suites")
def suites(s: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Every suite with its tasks, variants and episode counts; never a private suite's seeds."""
    return {"suites": describe(s, settings.scratch)}


@router.post("/suites", status_code=201)
async def add_suite(
    request: Request,
    settings: SettingsDep,
    private: Annotated[bool, Query(description="keep its seeds on the server")] = True,
) -> dict[str, Any]:
    """Add a suite (its TOML as the request body; the organiser's token); the scripted expert is
    queued on each task."""
    token = bearer(request.headers.get("authorization"))
    body = await request.body()
    if len(body) > MAX_SUITE_BYTES:
        raise HTTPException(413, f"the suite is {len(body):,} bytes, over the {MAX_SUITE_BYTES:,}-byte limit")
    try:
        source = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, "the suite must be UTF-8 TOML text") from None
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_add, request, settings, token, source, private)


def _add(request: Request, settings, token: str | None, source: str, private: bool) -> dict[str, Any]:
    from service.db import transaction

    with transaction(request.app.state.factory) as s:
        organiser(team_for(s, token))
        try:
            row, loaded = add(s, source, settings.scratch, private=private)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        for task in loaded.suite.tasks:
            ensure_reference(s, row.name, task.env_id, len(task.seeds) * len(task.variants))
        return {
            "name": row.name,
            "private": row.private,
            "tasks": [t.env_id for t in loaded.suite.tasks],
            "episodes": len(loaded.episodes()),
        }


@router.get("/queue")
def queue(s: SessionDep, settings: SettingsDep, team: Annotated[Team, Depends(organiser)]) -> dict[str, Any]:
    """Every waiting and running job, in order (the organiser's view: no files, no results)."""
    rows = s.execute(
        select(Submission, Team.name)
        .join(Team, Team.id == Submission.team_id)
        .where(Submission.status.in_(("queued", "running")))
        .order_by(Submission.created)
    ).all()
    return {
        "jobs": [
            {"id": sub.id, "team": name, "suite": sub.suite, "task": sub.task, "worker": sub.worker}
            | jobs.progress(s, sub, settings)
            for sub, name in rows
        ]
    }
