"""The service on a real PostgreSQL server: a throwaway cluster (``initdb``, ``postgres`` from
Debian's ``postgresql`` package) on a Unix socket; skipped where PostgreSQL is not installed."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.service.conftest import make_service
from tests.service.policies import constant_policy, reach_policy

pytest.importorskip("psycopg")


def _bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres():
    initdb, server = _bin("initdb"), _bin("postgres")
    if not (initdb and server):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    import tempfile

    # not under pytest's folders: those are closed to other users, and the server runs as one
    root = Path(tempfile.mkdtemp(prefix="twin-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "twin", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True)  # fmt: skip
    proc = subprocess.Popen(
        [*prefix, server, "-D", str(data), "-k", str(sock), "-c", "listen_addresses=", "-p", "5439"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://twin@/postgres?host={sock}&port=5439"
    import psycopg

    for _ in range(100):
        try:
            psycopg.connect(f"host={sock} port=5439 user=twin dbname=postgres").close()
            break
        except psycopg.OperationalError:
            time.sleep(0.1)
    else:
        proc.terminate()
        pytest.fail("PostgreSQL did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_service(tmp_path, postgres):
    from sqlalchemy import text

    from service.db import make_engine

    engine = make_engine(postgres)
    with engine.begin() as conn:  # a clean schema per test
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    yield from make_service(tmp_path, postgres)


def test_submit_run_and_rank_on_postgresql(pg_service, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.models import Base

    with pg_service.factory.kw["bind"].connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    r = pg_service.submit("acme", reach_policy(tmp_path / "reach.onnx"))
    assert r.status_code == 201, r.text
    assert pg_service.work() == 2
    board = pg_service.client.get("/api/leaderboard/alliance-private/FactoryReach-v0").json()
    assert board["entries"][0]["team"] == "acme" and board["entries"][0]["success"] > 0.5
    rows = pg_service.client.get(f"/api/submissions/{r.json()['id']}/results.json", headers=pg_service.auth("acme"))
    assert len(rows.json()["episodes"]) == 6


def test_concurrent_claims_give_each_team_one_running_job(pg_service, tmp_path):
    from service import jobs

    path = constant_policy(tmp_path / "idle.onnx")
    for team in ("acme", "acme", "acme", "globex", "globex"):
        assert pg_service.submit(team, path).status_code == 201
    got: list = []
    barrier = threading.Barrier(6)

    def claim(i):
        barrier.wait()
        sub = jobs.claim(pg_service.factory, f"w{i}")
        if sub is not None:
            got.append(sub.team_id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(set(got)) and len(got) == 3  # the expert, acme and globex


def test_a_bad_postgresql_url_is_said_with_its_password_hidden(tmp_path):
    from service.db import DatabaseError, open_database

    with pytest.raises(DatabaseError, match=r"cannot open or upgrade it") as err:
        open_database("postgresql://twin:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    assert Path(tmp_path).exists()


def test_an_episode_row_with_nan_kpis_is_kept_as_nulls(pg_service, tmp_path):
    from service import jobs

    sub_id = pg_service.submit("acme", constant_policy(tmp_path / "idle.onnx")).json()["id"]
    while (job := jobs.claim(pg_service.factory, "w1")) is not None and job.id != sub_id:
        jobs.finish(pg_service.factory, "w1", job.id, {"success": 1.0}, b"")
    row = {"task": "FactoryReach-v0", "variant": "nominal", "seed": 424242, "success": False, "failure": None}
    row |= {"return": float("nan"), "length": 50, "kpi_cycle_time_mean": float("nan"), "error": False}
    assert jobs.keep_episode(pg_service.factory, "w1", sub_id, row)
    (kept,) = jobs.episodes(pg_service.factory, sub_id)
    assert kept["return"] is None and kept["kpi_cycle_time_mean"] is None and kept["length"] == 50
