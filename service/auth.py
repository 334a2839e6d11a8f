"""Tokens: made once, shown once, stored as SHA-256; checked on every call that shows a team's data.

A token is ``ft_`` and 43 URL-safe characters (256 random bits), so its SHA-256 needs no salt:
nothing short enough to guess is ever hashed. Requests carry it as ``Authorization: Bearer``;
the pages take it from an HttpOnly cookie that ``/login`` sets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Team, utcnow

PREFIX = "ft_"
TOKEN_RE = re.compile(r"^ft_[A-Za-z0-9_-]{43}$")
COOKIE = "twin_token"


class AuthError(Exception):
    """A missing, malformed, unknown or expired token (HTTP 401), said without echoing it."""


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_team(session: Session, name: str, role: str = "team", days: float | None = None) -> tuple[Team, str]:
    """Create a team and return it with its token (the only time the token exists in clear)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}", name):
        raise ValueError(
            f"team name {name!r}: 1-64 letters, digits, spaces, '_', '.' or '-', starting with a letter or digit"
        )
    if role not in ("team", "organiser"):
        raise ValueError(f"role {role!r}: expected team or organiser")
    if days is not None and not days > 0:
        raise ValueError(f"--days {days:g}: expected a number of days above 0")
    if session.scalar(select(Team).where(Team.name == name)) is not None:
        raise ValueError(f"team {name!r} exists already (twin admin rotate-token {name!r} gives it a new token)")
    token = new_token()
    expires = utcnow() + timedelta(days=days) if days else None
    team = Team(name=name, role=role, token_hash=token_hash(token), token_expires=expires, created=utcnow())
    session.add(team)
    session.flush()
    return team, token


def rotate_token(session: Session, name: str, days: float | None = None) -> str:
    """A new token for ``name``; the old one stops working at once."""
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise ValueError(f"no team {name!r}")
    token = new_token()
    team.token_hash = token_hash(token)
    team.token_expires = utcnow() + timedelta(days=days) if days else None
    return token


def team_for(session: Session, token: str | None) -> Team:
    """The team a token belongs to; :class:`AuthError` saying what is wrong with it otherwise."""
    if not token:
        raise AuthError("this needs a team token: send 'Authorization: Bearer <token>'")
    if not TOKEN_RE.fullmatch(token):
        raise AuthError("malformed token: expected 'ft_' followed by 43 URL-safe characters")
    digest = token_hash(token)
    team = session.scalar(select(Team).where(Team.token_hash == digest))
    if team is None or not hmac.compare_digest(team.token_hash, digest):
        raise AuthError("unknown token (revoked, rotated or mistyped)")
    if team.token_expires is not None and team.token_expires <= utcnow():
        raise AuthError(f"token expired on {team.token_expires:%Y-%m-%d %H:%M} UTC; ask the organiser for a new one")
    return team


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (None without one)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return value.strip()
