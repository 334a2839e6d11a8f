"""The pages: the public leaderboards, and a team's submissions (after ``/login``)."""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import select

from service import jobs
from service.auth import COOKIE, AuthError, team_for
from service.models import Submission
from service.results import leaderboard
from service.routes.deps import PageTeamDep, SessionDep, SettingsDep
from service.routes.leaderboard import boards
from service.routes.submissions import finished_rows, own, suite_and_task
from service.suites import describe

router = APIRouter(tags=["pages"], include_in_schema=False)

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#1d2433}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:1.6rem}
a{color:#1a5fb4} code{font-size:.85em;background:#f1f3f6;padding:1px 4px;border-radius:3px}
table{border-collapse:collapse;width:100%;font-size:.9rem} .scroll{overflow-x:auto}
th,td{border-bottom:1px solid #e3e6eb;padding:6px 8px;text-align:right;white-space:nowrap}
th{background:#f6f7f9;cursor:pointer;user-select:none;white-space:normal;vertical-align:bottom;max-width:9em} th.l,td.l{text-align:left}
tr.ref td{color:#5c6370;background:#fafbfc;font-style:italic}
.muted{color:#6b7280;font-size:.85rem} .pill{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600}
.queued{background:#fff4ce} .running{background:#dbeafe} .done{background:#dcfce7} .failed{background:#fee2e2}
.bar{background:#e5e7eb;border-radius:6px;height:14px;width:100%;max-width:480px}
.bar>div{background:#2563eb;height:14px;border-radius:6px}
nav{display:flex;gap:16px;align-items:center;border-bottom:1px solid #e3e6eb;padding-bottom:8px;margin-bottom:12px}
nav .right{margin-left:auto} form.inline{display:inline}
"""

SORT_JS = """<script>
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const rows = [...body.rows].filter(r => !r.classList.contains('ref'));
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const c = r.cells[i]; const v = c.dataset.v ?? c.textContent; const n = parseFloat(v);
                     return isNaN(n) ? v : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
</script>"""


def page(title: str, body: str, team=None, refresh: int | None = None) -> HTMLResponse:
    who = (
        f"<span class='right muted'>team <b>{html.escape(team.name)}</b> · <a href='/submissions'>my submissions</a> "
        f"<form class='inline' method='post' action='/logout'><button>log out</button></form></span>"
        if team is not None
        else "<span class='right'><a href='/login'>team log-in</a></span>"
    )
    meta = f"<meta http-equiv='refresh' content='{refresh}'>" if refresh else ""
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width">{meta}<title>{html.escape(title)} · Factory Twin evaluation</title><style>{CSS}</style></head>
<body><nav><b>Factory Twin evaluation</b><a href="/">leaderboards</a>{who}</nav>{body}</body></html>"""
    return HTMLResponse(doc)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


@router.get("/", response_class=HTMLResponse)
def home(s: SessionDep, settings: SettingsDep, team: PageTeamDep) -> HTMLResponse:
    have = boards(s)
    items = "".join(
        f"<li><a href='/leaderboard/{quote(a)}/{quote(b)}'>{html.escape(a)} · {html.escape(b)}</a></li>"
        for a, b in have
    )
    suites = "".join(
        f"<tr><td class='l'>{html.escape(d['name'])}</td><td class='l'>{'private' if d['private'] else 'public'}</td>"
        f"<td class='l'>{html.escape(', '.join(t['task'] for t in d['tasks']))}</td>"
        f"<td>{sum(t['episodes_per_variant'] * len(t['variants']) for t in d['tasks'])}</td></tr>"
        for d in describe(s, settings.scratch)
    )
    body = (
        "<h1>Leaderboards</h1><p class='muted'>Each team's best finished submission per suite and task, "
        "evaluated by this server on the suite's seeds (a private suite's seeds never leave it).</p>"
        f"<ul>{items or '<li>no finished submission yet</li>'}</ul>"
        "<h2>Suites</h2><div class='scroll'><table><thead><tr><th class='l'>suite</th><th class='l'>seeds</th>"
        f"<th class='l'>tasks</th><th>episodes</th></tr></thead><tbody>{suites}</tbody></table></div>"
        "<p class='muted'>Submit with <code>twin submit POLICY.onnx --server URL --token T --suite S --task T</code> "
        "or <code>POST /api/submissions</code>.</p>"
    )
    return page("Leaderboards", body, team)


@router.get("/leaderboard/{suite}/{task}", response_class=HTMLResponse)
def board_page(suite: str, task: str, s: SessionDep, settings: SettingsDep, team: PageTeamDep) -> HTMLResponse:
    suite_and_task(s, settings, suite, task)
    lb = leaderboard(s, suite, task)
    entries = lb["entries"] + ([lb["reference"]] if lb["reference"] else [])
    variants = list(dict.fromkeys(v for e in entries for v in e["variants"]))
    ratios = list(dict.fromkeys(k for e in entries for k in e["robustness"]))
    kpis = [  # the task's KPIs, less those no entry moved from zero
        k for k in dict.fromkeys(k for e in entries for k in e["kpis"]) if any(e["kpis"].get(k) for e in entries)
    ]
    head = (
        "<th>rank</th><th class='l'>team</th><th>success, all variants</th><th class='l'>95% interval (%)</th>"
        + "".join(f"<th>{html.escape(v)} success</th>" for v in variants)
        + "".join(f"<th>robustness {html.escape(r)} / nominal</th>" for r in ratios)
        + "".join(f"<th>{html.escape(k)}</th>" for k in kpis)
        + "<th>episodes</th><th class='l'>submitted (UTC)</th><th class='l'>SHA-256</th>"
    )

    def row(e: dict[str, Any]) -> str:
        ref = e["reference"]
        rank = "ref." if ref else (f"={e['rank']}" if e["tied"] else str(e["rank"]))
        cells = [
            f"<td data-v='{0 if ref else e['rank']}'>{rank}</td>",
            f"<td class='l'>{html.escape(e['team'])}</td>",
            f"<td data-v='{e['success']}'>{_pct(e['success'])}</td>",
            f"<td class='l'>{_ci(e['success_ci95'])}</td>",
        ]
        for v in variants:
            x = e["variants"].get(v)
            cells.append(f"<td data-v='{x['success'] if x else -1}'>{_pct(x['success']) if x else '-'}</td>")
        for r in ratios:
            x = e["robustness"].get(r)
            cells.append(f"<td data-v='{-1 if x is None else x}'>{'-' if x is None else f'{x:.2f}'}</td>")
        for k in kpis:
            x = e["kpis"].get(k)
            cells.append(f"<td data-v='{'' if x is None else x}'>{'-' if x is None else f'{x:,.1f}'}</td>")
        sha = e["sha256"] or "(scripted)"
        cells += [
            f"<td>{e['episodes']}</td>",
            f"<td class='l'>{e['submitted'].replace('T', ' ')[:16]}</td>",
            f"<td class='l'><code title='{sha}'>{sha[:12]}</code></td>",
        ]
        return f"<tr class='{'ref' if ref else ''}'>{''.join(cells)}</tr>"

    rows = "".join(row(e) for e in entries) or f"<tr><td colspan='{6 + len(variants)}'>no entry yet</td></tr>"
    body = (
        f"<h1>{html.escape(task)} · {html.escape(suite)}</h1><p class='muted'>{html.escape(lb['note'])}; "
        "'=' marks a tie. Success is the share of episodes that met the task's goal; robustness is a variant's "
        "success over the nominal one's; KPIs are the nominal variant's means. Click a column to sort.</p>"
        f"<div class='scroll'><table class='sortable'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        + SORT_JS
    )
    return page(f"{task} · {suite}", body, team)


def _need(team, request: Request) -> None:
    if team is None:
        raise _Login(request.url.path)


class _Login(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


def login_redirect(request: Request, exc: _Login) -> Response:
    return RedirectResponse(f"/login?next={quote(exc.path)}", status_code=303)


@router.get("/submissions", response_class=HTMLResponse)
def my_page(request: Request, s: SessionDep, settings: SettingsDep, team: PageTeamDep) -> HTMLResponse:
    _need(team, request)
    subs = s.scalars(select(Submission).where(Submission.team_id == team.id).order_by(Submission.created.desc())).all()
    rows = "".join(
        f"<tr><td class='l'><a href='/submissions/{x.id}'>{x.id[:12]}</a></td><td class='l'>{html.escape(x.filename)}</td>"
        f"<td class='l'>{html.escape(x.suite)} · {html.escape(x.task)}</td><td class='l'><span class='pill {x.status}'>"
        f"{x.status}</span></td><td>{_pct((x.summary or {}).get('success')) if x.status == 'done' else ''}</td>"
        f"<td class='l'>{x.created:%Y-%m-%d %H:%M}</td></tr>"
        for x in subs
    )
    body = (
        f"<h1>Submissions of {html.escape(team.name)}</h1><div class='scroll'><table><thead><tr><th class='l'>id</th>"
        "<th class='l'>file</th><th class='l'>suite · task</th><th class='l'>status</th><th>success</th>"
        f"<th class='l'>submitted (UTC)</th></tr></thead><tbody>{rows or '<tr><td colspan=6>none yet</td></tr>'}"
        "</tbody></table></div>"
    )
    return page("My submissions", body, team)


@router.get("/submissions/{sub_id}", response_class=HTMLResponse)
def sub_page(sub_id: str, request: Request, s: SessionDep, settings: SettingsDep, team: PageTeamDep) -> HTMLResponse:
    _need(team, request)
    sub = own(s, team, sub_id)
    p = jobs.progress(s, sub, settings)
    facts = [
        ("file", f"{html.escape(sub.filename)} ({sub.size:,} bytes)"),
        ("policy SHA-256", f"<code>{sub.sha256}</code>"),
        ("suite · task", f"{html.escape(sub.suite)} · {html.escape(sub.task)}"),
        ("submitted", f"{sub.created:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    if sub.started:
        facts.append(("started", f"{sub.started:%Y-%m-%d %H:%M:%S} UTC (attempt {sub.attempts})"))
    if sub.finished:
        took = (sub.finished - (sub.started or sub.created)).total_seconds()
        facts.append(("finished", f"{sub.finished:%Y-%m-%d %H:%M:%S} UTC ({took:,.0f} s)"))
    state = f"<span class='pill {sub.status}'>{sub.status}</span>"
    extra = ""
    if sub.status == "queued":
        start = p.get("estimated_start")
        when = f"estimated start {start.replace('T', ' ').rstrip('Z')} UTC" if start else p.get("estimate_note", "")
        extra = f"<p>Place in the queue: <b>{p['queue_position']}</b> · {html.escape(when)}</p>"
    elif sub.status == "running":
        frac = sub.episodes_done / sub.episodes_total if sub.episodes_total else 0
        eta = p.get("eta")
        eta_text = f" · ETA {eta.replace('T', ' ').rstrip('Z')} UTC" if eta else ""
        extra = (
            f"<p>{sub.episodes_done} of {sub.episodes_total} episodes done{eta_text}</p>"
            f"<div class='bar'><div style='width:{100 * frac:.1f}%'></div></div>"
        )
    if sub.reason:
        extra += f"<p><b>{'Why it failed' if sub.status == 'failed' else 'Note'}:</b> {html.escape(sub.reason)}</p>"
    if sub.status == "done" and sub.summary:
        sm = sub.summary
        errs = f", {sm['errors']} could not run to their end" if sm["errors"] else ""
        extra += (
            f"<p>Success <b>{_pct(sm['success'])}</b> {_ci(sm['success_ci95'])} over {sm['episodes']} episodes{errs}.</p>"
            f"<p><a href='/submissions/{sub.id}/report.html'>scorecard report</a> · "
            f"<a href='/submissions/{sub.id}/results.json'>results.json</a> · "
            f"<a href='/submissions/{sub.id}/results.csv'>results.csv</a> · "
            f"<a href='/leaderboard/{quote(sub.suite)}/{quote(sub.task)}'>leaderboard</a></p>"
        )
    rows = "".join(f"<tr><th class='l'>{k}</th><td class='l'>{v}</td></tr>" for k, v in facts)
    body = f"<h1>Submission {sub.id[:12]} {state}</h1>{extra}<table>{rows}</table>"
    return page(f"Submission {sub.id[:12]}", body, team, refresh=5 if sub.status in ("queued", "running") else None)


@router.get("/submissions/{sub_id}/report.html", response_class=HTMLResponse)
def sub_report(sub_id: str, request: Request, s: SessionDep, team: PageTeamDep) -> HTMLResponse:
    _need(team, request)
    sub = own(s, team, sub_id)
    if sub.status != "done" or sub.report is None:
        raise HTTPException(409, f"submission {sub.id} is {sub.status}; its report exists once it is done")
    return HTMLResponse(sub.report.decode())


@router.get("/submissions/{sub_id}/results.{kind}")
def sub_results(sub_id: str, kind: str, request: Request, s: SessionDep, settings: SettingsDep, team: PageTeamDep):
    _need(team, request)
    from service.results import to_csv

    if kind not in ("json", "csv"):
        raise HTTPException(404, "results come as results.json or results.csv")
    sub = own(s, team, sub_id)
    rows = finished_rows(s, sub, settings)
    if kind == "csv":
        return PlainTextResponse(to_csv(rows), media_type="text/csv")
    return {"submission": sub.id, "suite": sub.suite, "task": sub.task, "summary": sub.summary, "episodes": rows}


LOGIN_JS = """<script>
// A log-in link may carry the token after '#': it never reaches a server log; posted from here.
if (location.hash.length > 1) {
  const f = document.getElementById('login'); f.token.value = decodeURIComponent(location.hash.slice(1));
  history.replaceState(null, '', location.pathname + location.search); f.submit();
}
</script>"""


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/submissions", error: str = "") -> HTMLResponse:
    nxt = next if next.startswith("/") and not next.startswith("//") else "/submissions"
    msg = f"<p class='failed pill'>{html.escape(error)}</p>" if error else ""
    body = (
        f"<h1>Team log-in</h1>{msg}<form id='login' method='post' action='/login'>"
        f"<input type='hidden' name='next' value='{html.escape(nxt)}'>"
        "<p><label>Team token <input name='token' type='password' size='56' autocomplete='off'></label> "
        "<button>log in</button></p></form><p class='muted'>The token <code>twin admin add-team</code> printed "
        "for your team. It is kept in a cookie of this site only.</p>" + LOGIN_JS
    )
    return page("Log in", body)


@router.post("/login")
def login(
    s: SessionDep, token: Annotated[str, Form(max_length=200)] = "", next: Annotated[str, Form(max_length=2000)] = "/"
):
    nxt = next if next.startswith("/") and not next.startswith("//") else "/submissions"
    try:
        team_for(s, token.strip())
    except AuthError as exc:
        return RedirectResponse(f"/login?next={quote(nxt)}&error={quote(str(exc))}", status_code=303)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=7 * 86400)
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp
