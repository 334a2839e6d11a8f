"""``/api/leaderboard``: public; each team's best finished submission per suite and task."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from service.models import Submission
from service.results import leaderboard
from service.routes.deps import SessionDep, SettingsDep
from service.routes.submissions import suite_and_task

router = APIRouter(prefix="/api/leaderboard", tags=["leaderboard"])


def boards(s) -> list[tuple[str, str]]:
    """The (suite, task) pairs that have a finished submission."""
    return sorted(
        s.execute(select(Submission.suite, Submission.task).distinct().where(Submission.status == "done")).all()
    )


@router.get("")
def index(s: SessionDep) -> dict[str, Any]:
    return {"boards": [{"suite": a, "task": b, "url": f"/api/leaderboard/{a}/{b}"} for a, b in boards(s)]}


@router.get("/{suite}/{task}")
def board(suite: str, task: str, s: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    suite_and_task(s, settings, suite, task)
    return leaderboard(s, suite, task)
