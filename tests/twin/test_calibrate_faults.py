"""Fault figures read from a plant's log: the log made by the twin's own fault timeline (the
streams that drive every cell's faults), so the true MTBF, MTTR and jam rate are known."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from twin.events import EventLog
from twin.faults import FaultTimeline
from twin.layout import Faults
from twin.telemetry.calibrate import CalibrationError, apply, fit, relative_error
from twin.telemetry.files import events_table, signals_table, write_recording
from twin.telemetry.recorder import EpisodeEvents

DT = 0.05
LAYOUT = {"machines": [{}, {}], "conveyors": [{}]}


def _plant(folder, faults: Faults, episodes: int, seconds: float, seed: int = 0):
    targets = {"machine_breakdown": ["machine-0", "machine-1"], "conveyor_jam": ["conveyor-0"]}
    timeline = FaultTimeline(faults, targets, lambda fault, on: None)
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    eps, offset = [], 0.0
    for k in range(episodes):
        log = EventLog()
        timeline.reset(rng)
        for i in range(1, int(seconds / DT) + 1):
            timeline.update(i * DT, log)
        eps.append(EpisodeEvents(k, offset, seconds, list(log.events)))
        offset += seconds
    signals = signals_table(start, np.zeros(0), np.zeros(0, dtype=np.int64), [], np.zeros((0, 0)))
    meta = {
        "start": start.isoformat(),
        "control_hz": 1 / DT,
        "episodes": [{"episode": e.episode, "offset_s": e.offset_s, "duration_s": e.duration_s} for e in eps],
    }
    write_recording(folder, signals, events_table(start, eps), meta)
    return folder


def test_breakdowns_and_jams_are_read_from_the_log(tmp_path):
    faults = Faults(
        machine_breakdown={"mtbf": 30.0, "mttr": 5.0},
        conveyor_jam={"rate": 1.5, "duration": [2.0, 6.0]},
    )
    plant = _plant(tmp_path / "plant", faults, episodes=150, seconds=60.0)
    names = [
        "faults.machine_breakdown.mtbf",
        "faults.machine_breakdown.mttr",
        "faults.conveyor_jam.rate",
        "faults.conveyor_jam.duration",
    ]
    fits = {f.name: f for f in fit(plant, LAYOUT, names)}
    assert relative_error(fits["faults.machine_breakdown.mtbf"].value, 30.0) < 0.10
    assert relative_error(fits["faults.machine_breakdown.mttr"].value, 5.0) < 0.10
    assert relative_error(fits["faults.conveyor_jam.rate"].value, 1.5) < 0.10
    assert relative_error(fits["faults.conveyor_jam.duration"].value, [2.0, 6.0]) < 0.10
    for f in fits.values():  # each with its bootstrap spread, from many faults, none in the layout before
        assert np.all(np.asarray(f.uncertainty) > 0) and f.samples >= 50 and f.before is None
    # the layout had no [faults]: calibration adds the families the plant shows
    data = apply(LAYOUT, list(fits.values()))
    assert data["faults"]["machine_breakdown"]["mtbf"] == fits["faults.machine_breakdown.mtbf"].value
    assert "faults" not in LAYOUT


def test_a_log_with_too_few_faults_or_an_unknown_family_is_refused(tmp_path):
    plant = _plant(tmp_path / "plant", Faults(machine_breakdown={"mtbf": 500.0, "mttr": 5.0}), 2, 30.0)
    with pytest.raises(CalibrationError, match=r"faults\.machine_breakdown\.mtbf: the log shows \d faults"):
        fit(plant, LAYOUT, ["faults.machine_breakdown.mtbf"])
    with pytest.raises(CalibrationError, match="fault families"):
        fit(plant, LAYOUT, ["faults.camera_fault.rate"])
    with pytest.raises(CalibrationError, match="has no 'duration'"):
        fit(plant, LAYOUT, ["faults.machine_breakdown.duration"])
