"""``/api/submissions``: upload a policy, follow its job, fetch its results (one's own only)."""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import select

from agents.evaluation.suite import SuiteError
from service import jobs
from service.auth import bearer, team_for
from service.check import UploadRefused, check_upload
from service.db import transaction
from service.models import Submission, Team
from service.results import public_rows
from service.routes.deps import SessionDep, SettingsDep, TeamDep
from service.suites import UnknownSuite, resolve

router = APIRouter(prefix="/api/submissions", tags=["submissions"])

FILENAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
SYSTEM_TEAM = "scripted expert"


def display_name(filename: str | None) -> str:
    """The upload's name for display: its last path part, tame characters only (never a path)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    return FILENAME_RE.sub("_", base)[-100:] or "policy.onnx"


def suite_and_task(s, settings, suite: str, task: str):
    """The suite called ``suite`` and whether it is private; 404 naming what is missing."""
    try:
        loaded, private = resolve(s, suite, settings.scratch)
    except UnknownSuite as exc:
        raise HTTPException(404, str(exc)) from None
    except SuiteError as exc:
        raise HTTPException(500, f"suite {suite!r} cannot be loaded on this server: {exc}") from None
    tasks = [t.env_id for t in loaded.suite.tasks]
    if task not in tasks:
        raise HTTPException(404, f"task {task!r} is not in suite {suite!r}; its tasks: {', '.join(tasks)}")
    return loaded, private


def ensure_reference(s, suite: str, task: str, episodes: int) -> None:
    """Queue the scripted expert on (suite, task) once: the leaderboard's reference row."""
    have = s.scalar(
        select(Submission.id).where(
            Submission.suite == suite,
            Submission.task == task,
            Submission.reference,
            Submission.status.in_(("queued", "running", "done")),
        )
    )
    if have is not None:
        return
    system = s.scalar(select(Team).where(Team.name == SYSTEM_TEAM))
    if system is None:
        from service.auth import token_hash

        system = Team(name=SYSTEM_TEAM, role="system", token_hash=token_hash(secrets.token_hex(32)))
        s.add(system)
        s.flush()
    jobs.create(s, system, suite, task, "expert", b"", "", episodes, reference=True)


def _read_limited(upload: UploadFile, limit: int, name: str) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{name}: larger than the {limit:,}-byte limit for a policy")
    if not data:
        raise HTTPException(422, f"{name}: the file is empty")
    return data


@router.post("", status_code=201)
def submit(
    request: Request,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="the ONNX policy")],
    suite: Annotated[str, Form(min_length=1, max_length=200)],
    task: Annotated[str, Form(min_length=1, max_length=200)],
) -> dict[str, Any]:
    """Queue an ONNX policy for evaluation on one task of a suite; 201 with the job's id, its
    place in the queue and estimated start."""
    factory = request.app.state.factory
    token = bearer(request.headers.get("authorization"))
    name = display_name(file.filename)
    with transaction(factory) as s:  # checks first, quickly; the upload's check runs outside any transaction
        team = team_for(s, token)
        loaded, _ = suite_and_task(s, settings, suite, task)
        try:
            jobs.check_quota(s, team, settings)
        except jobs.LimitReached as exc:
            raise HTTPException(429, str(exc)) from None
        suite_file = loaded.path
    if not name.lower().endswith(".onnx"):
        raise HTTPException(415, f"{name}: only ONNX policies (.onnx) are accepted")
    data = _read_limited(file, settings.max_upload_bytes, name)
    folder = settings.scratch / "uploads" / secrets.token_hex(8)
    folder.mkdir(parents=True)
    try:
        path = folder / "policy.onnx"
        path.write_bytes(data)
        try:
            episodes = check_upload(path, Path(suite_file), task, name)
        except UploadRefused as exc:
            raise HTTPException(422, str(exc)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    digest = hashlib.sha256(data).hexdigest()
    with transaction(factory) as s:
        team = team_for(s, token)
        try:
            jobs.check_quota(s, team, settings)  # again: two uploads may have been checked at once
        except jobs.LimitReached as exc:
            raise HTTPException(429, str(exc)) from None
        ensure_reference(s, suite, task, episodes)
        sub = jobs.create(s, team, suite, task, name, data, digest, episodes)
        return _view(s, sub, settings) | {"url": f"/submissions/{sub.id}"}


def _view(s, sub: Submission, settings) -> dict[str, Any]:
    out = {
        "id": sub.id,
        "suite": sub.suite,
        "task": sub.task,
        "filename": sub.filename,
        "sha256": sub.sha256,
        "bytes": sub.size,
        "submitted": sub.created.replace(microsecond=0).isoformat() + "Z",
        "started": sub.started.replace(microsecond=0).isoformat() + "Z" if sub.started else None,
        "finished": sub.finished.replace(microsecond=0).isoformat() + "Z" if sub.finished else None,
        "attempts": sub.attempts,
        "reason": sub.reason,
    }
    out |= jobs.progress(s, sub, settings)
    if sub.status == "done" and sub.summary:
        summary = sub.summary
        out["summary"] = {k: summary[k] for k in ("episodes", "errors", "success", "success_ci95", "robustness")}
        out["results"] = {
            kind: f"/api/submissions/{sub.id}/{kind}" for kind in ("results.json", "results.csv", "report.html")
        }
    return out


def own(s, team: Team, sub_id: str) -> Submission:
    """The team's submission ``sub_id``; 404 for another team's as for one that does not exist."""
    sub = s.get(Submission, sub_id) if re.fullmatch(r"[0-9a-f]{32}", sub_id) else None
    if sub is None or sub.team_id != team.id:
        raise HTTPException(404, f"no such submission of team {team.name!r}")
    return sub


@router.get("")
def mine(s: SessionDep, team: TeamDep, settings: SettingsDep) -> dict[str, Any]:
    """The caller's submissions, newest first."""
    subs = s.scalars(select(Submission).where(Submission.team_id == team.id).order_by(Submission.created.desc()))
    return {"team": team.name, "submissions": [_view(s, sub, settings) for sub in subs]}


@router.get("/{sub_id}")
def status(sub_id: str, s: SessionDep, team: TeamDep, settings: SettingsDep) -> dict[str, Any]:
    """A job's state: queued (place, estimated start), running (episodes, ETA), done, failed (why)."""
    return _view(s, own(s, team, sub_id), settings)


def finished_rows(s, sub: Submission, settings) -> list[dict[str, Any]]:
    if sub.status != "done":
        raise HTTPException(409, f"submission {sub.id} is {sub.status}; results exist once it is done")
    from service.models import Episode

    loaded, private = resolve(s, sub.suite, settings.scratch)
    rows = [e.row for e in s.scalars(select(Episode).where(Episode.submission_id == sub.id))]
    return public_rows(rows, loaded.only([sub.task]).episodes(), private)


@router.get("/{sub_id}/results.json")
def results_json(sub_id: str, s: SessionDep, team: TeamDep, settings: SettingsDep) -> dict[str, Any]:
    sub = own(s, team, sub_id)
    rows = finished_rows(s, sub, settings)
    return {"submission": sub.id, "suite": sub.suite, "task": sub.task, "summary": sub.summary, "episodes": rows}


@router.get("/{sub_id}/results.csv", response_class=PlainTextResponse)
def results_csv(sub_id: str, s: SessionDep, team: TeamDep, settings: SettingsDep) -> PlainTextResponse:
    from service.results import to_csv

    sub = own(s, team, sub_id)
    text = to_csv(finished_rows(s, sub, settings))
    return PlainTextResponse(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{sub.id}.csv"'}
    )


@router.get("/{sub_id}/report.html", response_class=HTMLResponse)
def report(sub_id: str, s: SessionDep, team: TeamDep) -> HTMLResponse:
    sub = own(s, team, sub_id)
    if sub.status != "done" or sub.report is None:
        raise HTTPException(409, f"submission {sub.id} is {sub.status}; its report exists once it is done")
    return HTMLResponse(sub.report.decode())
