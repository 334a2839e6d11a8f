"""Every endpoint tried with no token, a wrong token, another team's token and the right one.

The table (endpoint, credential, expected, got) is written to ``access.md`` in the test's folder,
and to ``$TWIN_TEST_OUT`` when that is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from service.routes import leaderboard, pages, submissions, suites
from tests.service.policies import reach_policy

ROUTERS = (submissions.router, suites.router, leaderboard.router, pages.router)
PUBLIC = {
    ("GET", "/api/suites"),
    ("GET", "/api/leaderboard"),
    ("GET", "/api/leaderboard/{suite}/{task}"),
    ("GET", "/"),
    ("GET", "/leaderboard/{suite}/{task}"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
}
ORGANISER = {("GET", "/api/queue"), ("POST", "/api/suites")}


def _endpoints() -> list[tuple[str, str]]:
    out = []
    for router in ROUTERS:
        for route in router.routes:
            for method in sorted(route.methods - {"HEAD"}):
                out.append((method, route.path))
    return out


def _call(svc, method, path, sub_id, headers, tmp_path):
    url = path.format(sub_id=sub_id, suite="alliance-private", task="FactoryReach-v0", kind="json")
    kw = {"headers": headers, "follow_redirects": False}
    if (method, path) == ("POST", "/api/submissions"):
        f = reach_policy(tmp_path / "p.onnx")
        kw |= {
            "files": {"file": ("p.onnx", f.read_bytes())},
            "data": {"suite": "alliance-private", "task": "FactoryReach-v0"},
        }
    elif (method, path) == ("POST", "/api/suites"):
        n = len(list(tmp_path.glob("suite-*")))
        (tmp_path / f"suite-{n}").touch()
        kw |= {"content": f'name = "extra-{n}"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [5]\n'}
    elif (method, path) == ("POST", "/login"):
        token = (headers.get("Authorization") or "Bearer ").split(" ", 1)[1]
        kw = {"data": {"token": token, "next": "/submissions"}, "follow_redirects": False}
    return svc.client.request(method, url, **kw)


def test_every_endpoint_with_every_credential(service, tmp_path):
    job = service.submit("acme", reach_policy(tmp_path / "mine.onnx")).json()
    service.work()
    creds = {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-token"},
        "unknown": {"Authorization": "Bearer ft_" + "x" * 43},
        "other team": service.auth("globex"),
        "own team": service.auth("acme"),
        "organiser": service.auth("organiser"),
    }
    endpoints = _endpoints()
    assert len(endpoints) >= 17
    table, wrong = [], []
    for method, path in endpoints:
        page = not path.startswith("/api/")
        for cred, headers in creds.items():
            if (method, path) in PUBLIC:
                expected = {"POST /login": "303", "POST /logout": "303"}.get(f"{method} {path}", "200")
            elif (method, path) in ORGANISER:
                expected = {"none": "401", "malformed": "401", "unknown": "401", "organiser": "200"}.get(cred, "403")
                if expected == "200" and method == "POST":
                    expected = "201"
            elif cred in ("none", "malformed", "unknown"):
                expected = "303 to /login" if page else "401"
            elif "{sub_id}" in path and cred in ("other team", "organiser"):
                expected = "404"  # another team's submission is as absent as one that never was
            elif method == "POST":
                expected = "201"
            else:
                expected = "200"
            if (method, path) == ("POST", "/login") and cred not in ("none",):
                expected = "303"
            r = _call(service, method, path, job["id"], headers, tmp_path)
            got = str(r.status_code)
            if r.status_code == 303 and "login" in r.headers.get("location", "") and expected.startswith("303 to"):
                got = "303 to /login"
            if cred != "own team" and (job["id"] in r.text or "mine.onnx" in r.text):
                got += " (leaks acme's submission)"
            if got != expected:
                wrong.append((method, path, cred, expected, got))
            table.append(f"| {method} {path} | {cred} | {expected} | {got} |")
            assert "Traceback" not in r.text
    text = "| endpoint | credential | expected | got |\n|---|---|---|---|\n" + "\n".join(table) + "\n"
    (tmp_path / "access.md").write_text(text)
    if os.environ.get("TWIN_TEST_OUT"):
        Path(os.environ["TWIN_TEST_OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["TWIN_TEST_OUT"]) / "access.md").write_text(text)
    assert wrong == []
