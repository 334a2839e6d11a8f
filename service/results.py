"""What a team, or the public, may see of a job: rows, summaries, reports and the leaderboard.

A private suite's seeds never leave the server: its rows carry the episode's number within its
task and variant in place of the seed, any text that would show a seed (a failure's reason) has
it blanked, its report shows no videos, and its hash (from which the file could be confirmed)
is left out.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.evaluation.report import aggregate, clean, wilson
from agents.evaluation.scorecard import headline
from service.models import Submission, Team

HIDDEN = "<hidden>"


def scrub(text: str | None, seeds: set[int]) -> str | None:
    """``text`` with every number that is one of ``seeds`` blanked."""
    if not text or not seeds:
        return text
    return re.sub(r"\d+", lambda m: HIDDEN if int(m.group()) in seeds else m.group(), text)


def public_rows(
    rows: list[dict[str, Any]], order: list[tuple[str, str, int]], private: bool, key: str = "episode"
) -> list[dict[str, Any]]:
    """The rows in suite order; for a private suite, numbered within their variant (1, 2, ...) in
    a column called ``key`` in place of the seed."""
    by_key = {(r["task"], r["variant"], int(r["seed"])): r for r in rows}
    out, count = [], {}
    seeds = {s for _, _, s in order}
    for ep in order:
        r = by_key.get(ep)
        if r is None:
            continue
        r = dict(r)
        if private:
            n = count[ep[:2]] = count.get(ep[:2], 0) + 1
            r = {(key if k == "seed" else k): (n if k == "seed" else v) for k, v in r.items()}
            r["failure"] = scrub(r.get("failure"), seeds)
        out.append(r)
    return clean(out)


def public_meta(meta: dict[str, Any], private: bool, filename: str) -> dict[str, Any]:
    meta = dict(meta)
    meta["policy"] = {**(meta.get("policy") or {}), "path": filename}
    meta.pop("telemetry", None)
    if private:
        for key in ("suite_hash", "suite_file"):
            meta.pop(key, None)
    return meta


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The leaderboard's view of a job: its aggregates, robustness ratios and overall success."""
    aggs = aggregate(rows)
    n = len(rows)
    k = sum(1 for r in rows if r["success"])
    lo, hi = wilson(k, n)
    head = headline(aggs)
    return {
        "episodes": n,
        "errors": sum(1 for r in rows if r.get("error")),
        "success": k / n if n else 0.0,
        "success_ci95": [lo, hi],
        "aggregates": aggs,
        "robustness": {k: v for k, v in (head[0]["robustness"] if head else {}).items() if v is not None},
    }


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _nominal(summary: dict[str, Any]) -> dict[str, Any]:
    aggs = summary.get("aggregates") or []
    return next((a for a in aggs if a["variant"] == "nominal"), aggs[0] if aggs else {})


KPI_COLUMNS = (
    ("throughput_mean", "throughput (parts/h)"),
    ("deliveries_per_hour_mean", "deliveries (totes/h)"),
    ("cycle_time_mean_mean", "cycle time (s)"),
    ("energy_mean", "energy (J)"),
    ("collisions_mean", "collisions (events)"),
    ("length_mean", "episode length (steps)"),
)
"""The nominal variant's KPI means a leaderboard shows, with units (those a task has)."""


def _entry(sub: Submission, team: str) -> dict[str, Any]:
    s = sub.summary or {}
    nominal = _nominal(s)
    variants = {
        a["variant"]: {"success": a["success_mean"], "ci95": [a["success_ci95_low"], a["success_ci95_high"]]}
        for a in s.get("aggregates") or []
    }
    return {
        "team": team,
        "reference": sub.reference,
        "success": s.get("success"),
        "success_ci95": s.get("success_ci95"),
        "variants": variants,
        "robustness": s.get("robustness") or {},
        "kpis": {label: nominal.get(key) for key, label in KPI_COLUMNS if nominal.get(key) is not None},
        "episodes": s.get("episodes"),
        "errors": s.get("errors"),
        "submitted": sub.created.replace(microsecond=0).isoformat() + "Z",
        "sha256": sub.sha256,
    }


def leaderboard(session: Session, suite: str, task: str) -> dict[str, Any]:
    """Each team's best finished submission on (suite, task), ranked by overall success; entries
    whose 95% intervals overlap share a rank (a tie), and the expert's run is a reference row."""
    subs = session.execute(
        select(Submission, Team.name)
        .join(Team, Team.id == Submission.team_id)
        .where(Submission.suite == suite, Submission.task == task, Submission.status == "done")
        .order_by(Submission.created)
    ).all()
    best: dict[str, Submission] = {}
    reference = None
    for sub, name in subs:
        if sub.summary is None:
            continue
        if sub.reference:
            reference = sub  # the newest expert run
            continue
        have = best.get(name)
        if have is None or (sub.summary["success"], -sub.created.timestamp()) > (
            have.summary["success"],
            -have.created.timestamp(),
        ):
            best[name] = sub
    entries = [_entry(sub, name) for name, sub in best.items()]
    entries.sort(key=lambda e: (-e["success"], e["submitted"]))
    for e in entries:  # behind only those whose whole interval lies above this one's
        e["rank"] = 1 + sum(1 for o in entries if o["success_ci95"][0] > e["success_ci95"][1])
    for e in entries:
        e["tied"] = any(o is not e and o["rank"] == e["rank"] for o in entries)
    return {
        "suite": suite,
        "task": task,
        "entries": entries,
        "reference": _entry(reference, "scripted expert") if reference is not None else None,
        "note": "ranked by success over every variant; entries whose 95% intervals overlap share a rank",
    }
