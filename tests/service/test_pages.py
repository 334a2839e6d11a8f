"""The pages as a reader sees them: headless Chromium (Debian's) on a running service, with
screenshots of the leaderboard and a submission page in the test's folder (and ``$TWIN_TEST_OUT``)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from agents.evaluation.browser import _run, find_chromium
from tests.service.live import Live
from tests.service.policies import constant_policy, reach_policy

SUITE = """name = "pages-demo"
description = "FactoryReach, three variants."
[[tasks]]
env_id = "FactoryReach-v0"
seeds = [21, 22, 23, 24]
[[tasks.variants]]
name = "nominal"
[[tasks.variants]]
name = "randomized"
env_kwargs = { randomize = true }
[[tasks.variants]]
name = "faults"
env_kwargs = { faults = "all" }
"""


def _chromium(browser: str, url: str, *args: str) -> str:
    return _run(browser, ["--virtual-time-budget=8000", *args, url], timeout=120)


@pytest.mark.slow
def test_leaderboard_and_submission_pages_in_chromium(tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    (tmp_path / "suite.toml").write_text(SUITE)
    live = Live(tmp_path / "home")
    try:
        live.admin("add-suite", str(tmp_path / "suite.toml"), "--public")
        tokens = {t: live.admin("add-team", t) for t in ("acme-robotics", "globex-automation", "initech")}
        live.start_server(workers=1)
        subs = {}
        for team, make in (
            ("acme-robotics", reach_policy),
            ("globex-automation", lambda p: reach_policy(p, gain=4.0)),
            ("initech", constant_policy),
        ):
            with open(make(tmp_path / f"{team}.onnx"), "rb") as f:
                r = httpx.post(
                    live.url + "/api/submissions",
                    headers={"Authorization": f"Bearer {tokens[team]}"},
                    files={"file": (f"{team}.onnx", f)},
                    data={"suite": "pages-demo", "task": "FactoryReach-v0"},
                    timeout=120,
                )
            assert r.status_code == 201, r.text
            subs[team] = r.json()["id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            got = [
                httpx.get(f"{live.url}/api/submissions/{s}", headers={"Authorization": f"Bearer {tokens[t]}"}).json()
                for t, s in subs.items()
            ]
            if all(g["status"] == "done" for g in got):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(live.log_text())

        shots = Path(os.environ.get("TWIN_TEST_OUT") or tmp_path) / "service-pages"
        shots.mkdir(parents=True, exist_ok=True)
        board = f"{live.url}/leaderboard/pages-demo/FactoryReach-v0"
        _chromium(browser, board, "--window-size=1440,520", f"--screenshot={shots / 'leaderboard.png'}")
        dom = _chromium(browser, board, "--window-size=1440,520", "--dump-dom")
        assert "acme-robotics" in dom and "globex-automation" in dom and "initech" in dom
        assert "ref.</td>" in dom and "scripted expert" in dom and "faults success" in dom
        assert dom.index("acme-robotics") < dom.index("initech")  # the idle policy ranks last

        page = f"/submissions/{subs['acme-robotics']}"
        login = f"{live.url}/login?next={page}#{tokens['acme-robotics']}"
        _chromium(browser, login, "--window-size=1440,520", f"--screenshot={shots / 'submission.png'}")
        dom = _chromium(browser, login, "--dump-dom")
        assert "Submission " in dom and ">done<" in dom and "scorecard report" in dom and "acme-robotics" in dom
        anonymous = _chromium(browser, live.url + page, "--dump-dom")
        assert "Team log-in" in anonymous and "scorecard report" not in anonymous
        for name in ("leaderboard.png", "submission.png"):
            assert (shots / name).stat().st_size > 10_000
            print(f"screenshot: {shots / name}")
        if shots.parent != tmp_path:
            shutil.copytree(shots, tmp_path / "service-pages", dirs_exist_ok=True)
    finally:
        live.close()
