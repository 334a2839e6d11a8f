"""Telemetry out: a run's signals and events as Parquet (long format) and OCEL 2.0."""

from __future__ import annotations

import json

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from agents.cli import run as twin  # noqa: E402
from agents.tools.play import run_episodes  # noqa: E402
from twin.paths import LAYOUTS_DIR as LAYOUTS  # noqa: E402
from twin.telemetry import MACHINE_STATES, Recorder, TelemetryError, read_recording  # noqa: E402


@pytest.fixture(scope="module")
def machine_tend(tmp_path_factory):
    """Two expert episodes of MachineTend-v1 recorded at 10 Hz, and the same two unrecorded."""
    out = tmp_path_factory.mktemp("telemetry") / "run"
    recorded = run_episodes("MachineTend-v1", "expert", 2, 7, telemetry=out, telemetry_rate=10)
    plain = run_episodes("MachineTend-v1", "expert", 2, 7)
    return out, recorded, plain


def test_recording_leaves_the_run_as_it_was(machine_tend):
    _, recorded, plain = machine_tend
    for a, b in zip(recorded, plain, strict=True):
        assert (a.success, a.ret, a.length, a.kpis) == (b.success, b.ret, b.length, b.kpis)


def test_signals_are_the_long_table_a_historian_exports(machine_tend):
    out, recorded, _ = machine_tend
    signals, events = read_recording(out)
    assert signals.column_names == ["timestamp", "episode", "asset", "signal", "value", "unit"]
    assert signals.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    rows = signals.to_pylist()
    per_sample = {(r["asset"], r["signal"], r["unit"]) for r in rows}
    assert ("panda-0", "joint_0", "rad") in per_sample and ("panda-0", "tool_z", "m") in per_sample
    assert ("machine-0", "state", "state") in per_sample
    n = len(per_sample)
    stamps = np.array([r["timestamp"].timestamp() for r in rows[::n]])
    # 10 Hz on the 20 Hz control clock: a sample every 0.1 s of simulated time, rising through
    # both episodes, the second starting where the first ended
    steps = np.diff(stamps)
    assert np.all(steps >= 0) and np.median(steps) == pytest.approx(0.1, abs=1e-6)
    per_episode = {k: sum(1 for r in rows[::n] if r["episode"] == k) for k in (7, 8)}
    for res in recorded:
        assert per_episode[res.seed] == res.length // 2 + 1
    # a machine's state signal is its state's index, and matches the event log's transitions
    states = [r["value"] for r in rows if (r["asset"], r["signal"]) == ("machine-0", "state")]
    assert {MACHINE_STATES[int(v)] for v in states} >= {"idle", "processing"}
    info = json.loads((out / "telemetry.json").read_text())
    assert (info["env_id"], info["rate_hz"], info["seeds"], info["signals"]) == (
        "MachineTend-v1",
        10.0,
        [7, 8],
        len(rows),
    )
    assert info["events"] == events.num_rows


def test_events_carry_the_event_log(machine_tend):
    out, recorded, _ = machine_tend
    _, events = read_recording(out)
    kinds = events.column("kind").to_pylist()
    placed = sum(r.kpis["parts_placed"] for r in recorded)
    assert kinds.count("placed") == placed > 0
    assert kinds.count("produced") >= 2
    stamps = [t.timestamp() for t in events.column("timestamp").to_pylist()]
    assert stamps == sorted(stamps)


def test_ocel_export_reads_back_in_pm4py(machine_tend):
    import pm4py

    out, _, _ = machine_tend
    _, events = read_recording(out)
    log = pm4py.read_ocel2_json(str(out / "ocel.json"))
    assert len(log.events) == events.num_rows
    assert dict(log.events["ocel:activity"].value_counts()) == dict(
        zip(*np.unique(events.column("kind").to_pylist(), return_counts=True), strict=True)
    )
    types = dict(zip(log.objects["ocel:oid"], log.objects["ocel:type"], strict=True))
    assert types["panda-0"] == "robot" and types["machine-0"] == "machine"
    # a part is an object per episode; each pick links the part, the robot that picked it and its
    # episode (an object too, with its start and length: the case of a classic event log)
    assert types["part-blank-0@7"] == "part" and types["part-blank-0@8"] == "part"
    assert types["episode-7"] == "episode"
    rel = log.relations
    picks = rel[rel["ocel:activity"] == "picked"]
    assert set(picks["ocel:qualifier"]) == {"part", "robot", "episode"}
    assert len(picks) == 3 * events.column("kind").to_pylist().count("picked")
    assert (rel["ocel:qualifier"] == "episode").sum() == events.num_rows


def test_a_conveyor_records_its_speed_and_light_barrier(tmp_path):
    out = tmp_path / "pick"
    res = run_episodes("ConveyorPick-v1", "random", 1, 0, telemetry=out)  # parts ride on to the barrier
    signals, _ = read_recording(out)
    rows = signals.to_pylist()
    beam = [r["value"] for r in rows if (r["asset"], r["signal"]) == ("conveyor-0", "beam_blocked")]
    speed = [r["value"] for r in rows if (r["asset"], r["signal"]) == ("conveyor-0", "speed")]
    assert len(beam) == len(speed) == res[0].length + 1  # every control step, and the reset
    assert 0 < sum(beam) < len(beam)  # parts pass the barrier, and it clears
    assert max(speed) > 0


def test_a_rate_above_the_control_rate_is_refused():
    import envs

    env = envs.make("MachineTend-v1")
    try:
        with pytest.raises(TelemetryError, match="at most the control rate, 20 Hz"):
            Recorder(env.unwrapped.twin, rate_hz=50)
    finally:
        env.close()


def test_twin_record_takes_a_layout_file_and_refuses_bad_input(tmp_path, capsys):
    text = (
        (LAYOUTS / "machine_tending.toml").read_text().replace("process_time = [4.0, 5.0]", "process_time = [2.0, 2.5]")
    )
    layout = tmp_path / "fast.toml"
    layout.write_text(text)
    out = tmp_path / "fast"
    assert twin(["record", "MachineTend-v1", "--out", str(out), "--layout", str(layout), "--telemetry-rate", "5"]) == 0
    info = json.loads((out / "telemetry.json").read_text())
    assert info["layout"] == str(layout) and info["rate_hz"] == 5.0
    capsys.readouterr()
    # a folder that holds a recording already is not written over
    before = (out / "signals.parquet").read_bytes()
    assert twin(["record", "MachineTend-v1", "--out", str(out)]) == 2
    assert "already holds a recording" in capsys.readouterr().err
    assert (out / "signals.parquet").read_bytes() == before
    # a layout with a field out of bounds, or no such file: refused naming it
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("process_time = [2.0, 2.5]", "process_time = [-1.0, 2.5]"))
    assert twin(["record", "MachineTend-v1", "--out", str(tmp_path / "x"), "--layout", str(bad)]) == 2
    msg = capsys.readouterr().err
    assert "bad.toml" in msg and "process_time" in msg
    assert twin(["play", "MachineTend-v1", "--layout", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err
    assert twin(["record", "MachineTend-v1", "--out", str(tmp_path / "y"), "--telemetry-rate", "0"]) == 2
    assert "--telemetry-rate" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_task_that_builds_its_twin_again_at_reset_is_recorded_on_the_new_one():
    import envs

    env = envs.make("WaferTransfer-v2")  # a fresh world every episode (Task.fresh_world)
    try:
        env.reset(seed=0)
        rec = Recorder(env.unwrapped.twin, rate_hz=20)
        for episode in (0, 1):
            if episode:
                env.reset(seed=episode)
            rec.begin(episode, env.unwrapped.twin)
            for _ in range(5):
                env.step(env.action_space.sample() * 0)
                rec.after_step()
            rec.end()
        assert rec.twin is env.unwrapped.twin
        signals, _ = rec.tables()
        rows = signals.to_pylist()
        assert {("wafer_robot-0", "theta", "rad"), ("wafer-0-0", "z", "m")} <= {
            (r["asset"], r["signal"], r["unit"]) for r in rows
        }
        assert signals.num_rows == 12 * len(rec.table) and rec.samples == 12
        with pytest.raises(TelemetryError, match="before any episode"):
            rec.after_step()
    finally:
        env.close()
