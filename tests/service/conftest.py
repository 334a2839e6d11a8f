from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnx")

PRIVATE_SEEDS = [424242, 313131, 271828]
"""The private suite's seeds: numbers that must never appear in what a team is sent."""

PRIVATE_SUITE = f"""name = "alliance-private"
description = "FactoryReach on hidden seeds."

[[tasks]]
env_id = "FactoryReach-v0"
seeds = {PRIVATE_SEEDS}

[[tasks.variants]]
name = "nominal"

[[tasks.variants]]
name = "randomized"
env_kwargs = {{ randomize = true }}
"""


@dataclass
class Service:
    settings: object
    factory: object
    client: object
    tokens: dict[str, str]
    root: Path

    def auth(self, team: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[team]}"}

    def submit(self, team: str, path: Path, suite: str = "alliance-private", task: str = "FactoryReach-v0", name=None):
        with open(path, "rb") as f:
            return self.client.post(
                "/api/submissions",
                headers=self.auth(team),
                files={"file": (name or path.name, f, "application/octet-stream")},
                data={"suite": suite, "task": task},
            )

    def work(self) -> int:
        from service.worker import serve_jobs

        return serve_jobs(self.factory, self.settings, once=True, log=lambda line: None)


@pytest.fixture
def service(tmp_path) -> Service:
    """A service on a fresh SQLite file: teams acme, globex and the organiser, the private suite."""
    yield from make_service(tmp_path, f"sqlite:///{tmp_path / 'service.db'}")


def make_service(tmp_path, url: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette: its TestClient on httpx is deprecated, not gone
        from fastapi.testclient import TestClient
    from service import admin
    from service.app import create_app
    from service.db import open_database
    from service.settings import Settings

    settings = Settings(db=url, scratch=tmp_path / "scratch", daily_submissions=5)
    factory = open_database(settings.db)
    tokens = {
        name: admin.cmd_add_team(factory, name, name == "organiser", None) for name in ("acme", "globex", "organiser")
    }
    suite = tmp_path / "private.toml"
    suite.write_text(PRIVATE_SUITE)
    admin.cmd_add_suite(factory, settings.scratch, suite, private=True)
    with TestClient(create_app(settings, factory)) as client:
        yield Service(settings, factory, client, tokens, tmp_path)
