"""The suites a service offers: the bundled public ones (``seeds/``) and those the organiser adds.

An added suite is kept in the database as its TOML; a worker or the server writes it into its
own scratch folder to load it. It may name bundled layouts only: no path from outside reaches
the file system.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.evaluation.suite import SEEDS_DIR, LoadedSuite, SuiteError, load_suite
from service.models import Suite, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class UnknownSuite(LookupError):
    pass


def bundled_names() -> list[str]:
    return sorted(p.stem for p in SEEDS_DIR.glob("*.toml"))


def _write(scratch: Path, suite: Suite) -> Path:
    folder = scratch / "suites" / hashlib.sha256(suite.source.encode()).hexdigest()[:16]
    path = folder / f"{suite.name}.toml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(suite.source, encoding="utf-8")
        tmp.replace(path)
    return path


def resolve(session: Session, name: str, scratch: Path) -> tuple[LoadedSuite, bool]:
    """The suite called ``name`` and whether it is private (:class:`UnknownSuite` if none is)."""
    row = session.get(Suite, name) if NAME_RE.fullmatch(name) else None
    if row is not None:
        return load_suite(_write(scratch, row)), row.private
    if name in bundled_names():
        return load_suite(name), False
    raise UnknownSuite(f"unknown suite {name!r}; this server has: {', '.join(list_names(session))}")


def list_names(session: Session) -> list[str]:
    return sorted(set(bundled_names()) | set(session.scalars(select(Suite.name))))


def describe(session: Session, scratch: Path) -> list[dict[str, Any]]:
    """Every suite with its tasks, variants and episode counts (never a private suite's seeds)."""
    out = []
    for name in list_names(session):
        try:
            loaded, private = resolve(session, name, scratch)
        except (SuiteError, UnknownSuite):
            continue
        out.append(
            {
                "name": name,
                "private": private,
                "description": loaded.suite.description,
                "tasks": [
                    {"task": t.env_id, "variants": [v.name for v in t.variants], "episodes_per_variant": len(t.seeds)}
                    for t in loaded.suite.tasks
                ],
            }
        )
    return out


def add(session: Session, source: str, scratch: Path, private: bool = True) -> tuple[Suite, LoadedSuite]:
    """Check and keep a suite's TOML; refused (ValueError naming the problem) if it is not a valid
    suite, names a layout by path, or takes the name of a suite that exists."""
    data = source.encode()
    check = scratch / "suites" / "incoming" / hashlib.sha256(data).hexdigest()[:16]
    check.mkdir(parents=True, exist_ok=True)
    path = check / "suite.toml"
    path.write_bytes(data)
    try:
        loaded = load_suite(path)
    except SuiteError as exc:
        raise ValueError(str(exc).replace(str(path), "the suite")) from None
    for i, task in enumerate(loaded.suite.tasks):
        for ref in [task.layout] + [v.layout for v in task.variants]:
            if ref is not None and ("/" in ref or "\\" in ref or ref.endswith(".toml")):
                raise ValueError(f"tasks[{i}]: layout {ref!r}: a served suite names bundled layouts only, not files")
    name = loaded.suite.name
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"name {name!r}: 1-100 letters, digits, '_', '.' or '-'")
    if name in bundled_names() or session.get(Suite, name) is not None:
        raise ValueError(f"a suite named {name!r} exists already; give this one another name (e.g. {name}-2)")
    row = Suite(name=name, private=private, source=source, digest=loaded.hash, created=utcnow())
    session.add(row)
    session.flush()
    return row, load_suite(_write(scratch, row))
