"""twin replay: a plant log drives the twin's arrivals, machine cycles, breakdowns and belts."""

from __future__ import annotations

import json

import pytest

pa = pytest.importorskip("pyarrow")

from agents.cli import run as twin  # noqa: E402
from agents.tools.play import run_episodes  # noqa: E402
from twin.paths import LAYOUTS_DIR  # noqa: E402
from twin.telemetry import read_recording  # noqa: E402
from twin.telemetry.fidelity import fidelity, read_log  # noqa: E402


def _states(folder, machine: str) -> list[tuple[int, float, str]]:
    """(episode, seconds since the recording's start, state) of each of ``machine``'s changes."""
    _, events = read_recording(folder)
    start = json.loads((folder / "telemetry.json").read_text())["start"]
    from datetime import datetime

    t0 = datetime.fromisoformat(start)
    return [
        (r["episode"], round((r["timestamp"] - t0).total_seconds(), 3), r["detail"])
        for r in events.to_pylist()
        if r["kind"] == "machine_state" and r["station"] == machine
    ]


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """A 'plant' whose fast machine runs [2, 2.5] s cycles and breaks down now and then."""
    root = tmp_path_factory.mktemp("replay")
    text = (LAYOUTS_DIR / "machine_tending.toml").read_text()
    (root / "plant.toml").write_text(text.replace("process_time = [4.0, 5.0]", "process_time = [2.0, 2.5]"))
    kwargs = {"layout": str(root / "plant.toml"), "faults": ["machine_breakdown"]}
    run_episodes("MachineTend-v1", "expert", 2, 5, telemetry=root / "plant", telemetry_rate=5, env_kwargs=kwargs)
    return root


def test_a_run_replayed_agrees_with_itself_perfectly(tmp_path):
    log = tmp_path / "run"
    run_episodes("MachineTend-v1", "expert", 2, 3, telemetry=log, telemetry_rate=5)
    assert twin(["replay", str(log), "--out", str(tmp_path / "replay")]) == 0
    doc = fidelity(read_log(log), read_log(tmp_path / "replay"))
    assert doc["throughput_error"] == 0.0
    assert (doc["ks_statistic"], doc["wasserstein_s"]) == (0.0, 0.0)
    assert doc["time_in_state_agreement"] == {"machine-0": 1.0, "machine-1": 1.0}


def test_the_log_not_the_layout_sets_the_cycles_and_breakdowns(plant, tmp_path):
    out = tmp_path / "replay"
    # the bundled layout says [4, 5] s and no breakdowns: the replay follows the plant's log instead
    assert (
        twin(["replay", str(plant / "plant"), "--out", str(out), "--layout", str(LAYOUTS_DIR / "machine_tending.toml")])
        == 0
    )
    logged, replayed = _states(plant / "plant", "machine-0"), _states(out, "machine-0")
    assert any(s == "down" for _, _, s in logged), "the plant log should show a breakdown"
    assert replayed == logged
    info = json.loads((out / "replay.json").read_text())
    assert info["repaired"] == [] and info["left_out"] == []


def test_a_log_naming_what_the_layout_lacks_is_refused_and_what_can_be_mended_is(plant, tmp_path, capsys):
    import pyarrow.parquet as pq

    events = pq.read_table(plant / "plant" / "events.parquet")
    rows = events.to_pylist()
    k = next(i for i, r in enumerate(rows) if r["kind"] == "machine_state")
    rows[k]["station"] = "machine-7"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "telemetry.json").write_bytes((plant / "plant" / "telemetry.json").read_bytes())
    (bad / "signals.parquet").write_bytes((plant / "plant" / "signals.parquet").read_bytes())
    pq.write_table(pa.Table.from_pylist(rows, schema=events.schema), bad / "events.parquet")
    assert twin(["replay", str(bad), "--out", str(tmp_path / "x")]) == 2
    msg = capsys.readouterr().err
    assert f"row {k}" in msg and "machine-7" in msg and "events.parquet" in msg
    assert not (tmp_path / "x").exists()
    # rows out of time order are put back in order, and the report says so
    rows = events.to_pylist()
    i = next(i for i in range(len(rows) - 1) if rows[i]["timestamp"] < rows[i + 1]["timestamp"])
    rows[i], rows[i + 1] = rows[i + 1], rows[i]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("telemetry.json", "signals.parquet"):
        (mixed / name).write_bytes((plant / "plant" / name).read_bytes())
    pq.write_table(pa.Table.from_pylist(rows, schema=events.schema), mixed / "events.parquet")
    assert twin(["replay", str(mixed), "--out", str(tmp_path / "y")]) == 0
    assert "time order" in json.loads((tmp_path / "y" / "replay.json").read_text())["repaired"][0]
