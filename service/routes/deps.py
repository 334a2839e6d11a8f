"""What the routes share: the database session, the caller's team, the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from service.auth import COOKIE, AuthError, bearer, team_for
from service.models import Team
from service.settings import Settings


def settings(request: Request) -> Settings:
    return request.app.state.settings


def session(request: Request) -> Iterator[Session]:
    """A session per request, committed when the route returns without an error."""
    factory = request.app.state.factory
    with factory() as s, s.begin():
        yield s


SessionDep = Annotated[Session, Depends(session)]
SettingsDep = Annotated[Settings, Depends(settings)]


def team(s: SessionDep, authorization: Annotated[str | None, Header()] = None) -> Team:
    """The team whose token the request carries (401 saying what is wrong otherwise)."""
    return team_for(s, bearer(authorization))


TeamDep = Annotated[Team, Depends(team)]


def organiser(t: TeamDep) -> Team:
    if t.role != "organiser":
        raise HTTPException(403, "this needs the organiser's token")
    return t


def page_team(request: Request, s: SessionDep) -> Team | None:
    """The team of a page's visitor (the login cookie, or a bearer header), None if anonymous."""
    header = request.headers.get("authorization")
    token = bearer(header) if header else request.cookies.get(COOKIE)
    if token is None:
        return None
    try:
        return team_for(s, token)
    except AuthError:
        return None


PageTeamDep = Annotated[Team | None, Depends(page_team)]
