"""``twin submit``: upload a policy to a service and follow its job to the end.

Exit status: 0 the job ended done, 1 it failed (the reason on one line), 2 the request was
refused (a bad token, file, suite or task; the server unreachable), with the reason on one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Refused(Exception):
    """The server refused the request, or could not be reached (exit 2)."""


def _detail(resp) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    return f"HTTP {resp.status_code}: {detail or resp.text[:200] or resp.reason_phrase}"


def submit(server: str, token: str, policy: Path, suite: str, task: str, timeout: float = 600.0) -> dict[str, Any]:
    import httpx

    if not policy.is_file():
        raise Refused(f"{policy}: no such file")
    try:
        with open(policy, "rb") as f:
            resp = httpx.post(
                server.rstrip("/") + "/api/submissions",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": (policy.name, f, "application/octet-stream")},
                data={"suite": suite, "task": task},
                timeout=timeout,
            )
    except httpx.HTTPError as exc:
        raise Refused(f"{server}: cannot reach the service: {exc}") from None
    if resp.status_code != 201:
        raise Refused(_detail(resp))
    return resp.json()


def follow(
    server: str, token: str, sub_id: str, on_update: Callable[[dict[str, Any]], None], period: float = 2.0
) -> dict[str, Any]:
    """Poll the job until it is done or failed; a server away for a while (a restart) is waited for."""
    import httpx

    url = f"{server.rstrip('/')}/api/submissions/{sub_id}"
    away_since = None
    while True:
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        except httpx.HTTPError as exc:
            away_since = away_since or time.monotonic()
            if time.monotonic() - away_since > 600:
                raise Refused(f"{server}: unreachable for 10 minutes ({exc}); the job {sub_id} goes on there") from None
            on_update({"status": "server unreachable, retrying"})
            time.sleep(period)
            continue
        away_since = None
        if resp.status_code != 200:
            raise Refused(_detail(resp))
        state = resp.json()
        on_update(state)
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(period)
