"""``twin admin``: teams, tokens and suites, straight on the database the server uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.auth import add_team, rotate_token
from service.db import transaction
from service.models import Submission, Team


def cmd_add_team(factory: sessionmaker[Session], name: str, organiser: bool, days: float | None) -> str:
    with transaction(factory) as s:
        _, token = add_team(s, name, "organiser" if organiser else "team", days)
    return token


def cmd_rotate(factory: sessionmaker[Session], name: str, days: float | None) -> str:
    with transaction(factory) as s:
        return rotate_token(s, name, days)


def cmd_teams(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        counts = dict(s.execute(select(Submission.team_id, func.count()).group_by(Submission.team_id)).all())
        return [
            {
                "team": t.name,
                "role": t.role,
                "created": f"{t.created:%Y-%m-%d %H:%M}",
                "token expires": f"{t.token_expires:%Y-%m-%d %H:%M}" if t.token_expires else "never",
                "submissions": counts.get(t.id, 0),
            }
            for t in s.scalars(select(Team).where(Team.role != "system").order_by(Team.name))
        ]


def cmd_add_suite(factory: sessionmaker[Session], scratch: Path, path: Path, private: bool) -> dict[str, Any]:
    from service.routes.submissions import ensure_reference
    from service.suites import add

    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it as UTF-8 text: {exc}") from None
    with transaction(factory) as s:
        row, loaded = add(s, source, scratch, private=private)
        for task in loaded.suite.tasks:
            ensure_reference(s, row.name, task.env_id, len(task.seeds) * len(task.variants))
        return {"name": row.name, "private": private, "tasks": [t.env_id for t in loaded.suite.tasks]}
