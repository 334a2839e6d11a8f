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


def test_the_plant_log_may_come_as_ocel_or_xes(plant, tmp_path):
    """The same log as OCEL 2.0 (this package's export) and as XES (written by pm4py, as a
    process-mining tool writes one) drives the twin through the same cycles and breakdowns."""
    import pandas as pd
    import pm4py

    layout = str(LAYOUTS_DIR / "machine_tending.toml")
    base = ["--layout", layout, "--env", "MachineTend-v1"]
    assert twin(["replay", str(plant / "plant"), "--out", str(tmp_path / "from-folder"), *base]) == 0
    assert twin(["replay", str(plant / "plant" / "ocel.json"), "--out", str(tmp_path / "from-ocel"), *base]) == 0
    logged = _states(plant / "plant", "machine-0")
    assert _states(tmp_path / "from-ocel", "machine-0") == logged == _states(tmp_path / "from-folder", "machine-0")

    _, events = read_recording(plant / "plant")
    info = json.loads((plant / "plant" / "telemetry.json").read_text())
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(info["start"])
    starts = {e["episode"]: (t0 + timedelta(seconds=e["offset_s"]), e["duration_s"]) for e in info["episodes"]}
    df = events.to_pandas()
    df = df.rename(columns={"kind": "concept:name", "timestamp": "time:timestamp"})
    df["case:concept:name"] = "episode-" + df["episode"].astype(str)
    df["case:start"] = pd.to_datetime([starts[e][0] for e in df["episode"]], utc=True)
    df["case:duration_s"] = [starts[e][1] for e in df["episode"]]
    df = df.drop(columns=["episode"]).fillna({c: "" for c in ("part", "robot", "station", "detail", "defect")})
    pm4py.write_xes(df, str(tmp_path / "plant.xes"))
    assert twin(["replay", str(tmp_path / "plant.xes"), "--out", str(tmp_path / "from-xes"), *base]) == 0
    assert _states(tmp_path / "from-xes", "machine-0") == logged


def test_a_bad_ocel_or_xes_log_is_refused_naming_the_event(plant, tmp_path, capsys):
    doc = json.loads((plant / "plant" / "ocel.json").read_text())
    ev = next(e for e in doc["events"] if e["type"] == "machine_state")
    ev["time"] = "yesterday"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    base = ["--out", str(tmp_path / "x"), "--env", "MachineTend-v1"]
    assert twin(["replay", str(tmp_path / "bad.json"), *base]) == 2
    assert f"event {ev['id']!r}: time 'yesterday' is not an ISO 8601 timestamp" in capsys.readouterr().err
    doc = json.loads((plant / "plant" / "ocel.json").read_text())
    doc["objects"] = [o for o in doc["objects"] if o["id"] != "machine-1"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    assert twin(["replay", str(tmp_path / "bad.json"), *base]) == 2
    assert "relates to object 'machine-1', which the log does not list" in capsys.readouterr().err
    # an asset the layout lacks is named by the OCEL event's id
    doc = json.loads((plant / "plant" / "ocel.json").read_text())
    next(o for o in doc["objects"] if o["id"] == "machine-1")["attributes"][0]["value"] = "machine-9"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    assert twin(["replay", str(tmp_path / "bad.json"), *base]) == 2
    assert "event 'e" in (msg := capsys.readouterr().err) and "machine 'machine-9' is not in the layout" in msg
    (tmp_path / "bad.xes").write_text('<?xml version="1.0"?><!DOCTYPE log [<!ENTITY a "aaaa">]><log>&a;</log>')
    assert twin(["replay", str(tmp_path / "bad.xes"), *base]) == 2
    assert "defines XML entities" in capsys.readouterr().err
    (tmp_path / "x.xes").write_text(
        "<log><trace><event><string key='concept:name' value='arrived'/></event></trace></log>"
    )
    assert twin(["replay", str(tmp_path / "x.xes"), *base]) == 2
    assert "trace 0 event 0: an event needs concept:name and time:timestamp" in capsys.readouterr().err
    assert twin(["replay", str(plant / "plant" / "ocel.json"), "--out", str(tmp_path / "y")]) == 2
    assert "names no task; give it with --env" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_plant_log_with_faults_is_of_the_same_cell_as_its_layout_without_them(plant):
    """The cell's fault flags are recorded under the asset ``cell``: a plant that breaks down is
    still the bundled cell, which calibration may give the fault family it lacks."""
    from agents.tools.calibrate import check_assets

    signals, _ = read_recording(plant / "plant")
    assert "cell" in set(signals.column("asset").to_pylist())
    check_assets(plant / "plant", "MachineTend-v1", LAYOUTS_DIR / "machine_tending.toml")
