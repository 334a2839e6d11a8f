"""The ISO 22400 time model and OEE, checked against a log built by hand."""

from __future__ import annotations

import math

import pytest

from twin.events import EventLog, compute_oee, state_times


def _log() -> EventLog:
    log = EventLog()
    m = "machine-0"
    for t, state in [(5, "loaded"), (6, "processing"), (16, "done"), (20, "idle")]:
        log.add(t, "machine_state", "raw-0", detail=state, station=m)
    log.add(16, "produced", "raw-0", detail="good", station=m)
    for t, state in [(25, "loaded"), (26, "processing"), (36, "done"), (40, "idle")]:
        log.add(t, "machine_state", "raw-1", detail=state, station=m)
    log.add(36, "produced", "raw-1", detail="defective", station=m)
    log.add(50, "machine_state", detail="down", station=m)
    log.add(70, "machine_state", detail="idle", station=m)
    log.add(80, "machine_state", "raw-2", detail="loaded", station=m)
    log.add(81, "machine_state", "raw-2", detail="processing", station=m)  # still running at the end
    log.add(30, "machine_state", detail="processing", station="machine-1")  # another machine: not counted
    return log


def test_state_times_cover_the_whole_span():
    times = state_times(_log(), "machine-0", 100.0)
    assert times == {"idle": 30.0, "loaded": 3.0, "processing": 39.0, "done": 8.0, "blocked": 0.0, "down": 20.0}
    assert math.isclose(sum(times.values()), 100.0)


def test_oee_follows_iso_22400_by_hand():
    k = compute_oee(_log(), 100.0, {"machine-0": 8.0})["machine-0"]
    assert k["planned_busy_time"] == 100.0  # PBT: no planned downtime in an episode
    assert k["actual_production_time"] == 39.0  # APT: 10 + 10 + 19 s processing
    assert k["down_time"] == 20.0 and k["idle_time"] == 41.0
    assert k["produced"] == 2.0 and k["good"] == 1.0  # the running cycle has produced nothing yet
    assert k["availability"] == pytest.approx(39 / 100)  # APT / PBT
    assert k["performance"] == pytest.approx(8 * 2 / 39)  # PRI x PQ / APT
    assert k["quality"] == pytest.approx(1 / 2)  # GQ / PQ
    assert k["oee"] == pytest.approx(0.08)  # 0.39 x 0.410 x 0.5


def test_a_machine_that_never_ran_has_undefined_rates():
    k = compute_oee(EventLog(), 60.0, {"machine-0": 8.0})["machine-0"]
    assert k["availability"] == 0.0 and k["idle_time"] == 60.0
    assert math.isnan(k["performance"]) and math.isnan(k["quality"]) and math.isnan(k["oee"])


def test_quality_counts_what_became_of_each_produced_part():
    log = EventLog()
    m = "machine-0"
    for k in range(5):  # five cycles of 2 s, one after the other
        t = 10.0 * k
        log.add(t, "machine_state", f"p{k}", detail="processing", station=m)
        log.add(t + 2, "produced", f"p{k}", detail="defective" if k == 1 else "good", station=m)
        log.add(t + 2, "machine_state", f"p{k}", detail="done", station=m)
        log.add(t + 3, "machine_state", f"p{k}", detail="idle", station=m)
    log.add(3.5, "placed", "p0", detail="tray-1")  # delivered: good
    log.add(13.5, "placed", "p1", detail="tray-1")  # a defective blank machined: bad however delivered
    log.add(23.5, "dropped", "p2", detail="released outside a bin")  # dropped after it was made: scrap
    log.add(33.5, "inspected", "p3", detail="reject", station="inspection-0")  # rejected downstream
    log.add(43.5, "inspected", "p4", detail="pass", station="inspection-0")
    log.add(1.0, "dropped", "p4")  # a drop before it was produced does not spoil the finished part
    k = compute_oee(log, 50.0, {m: 2.0})[m]
    assert k["produced"] == 5.0 and k["good"] == 2.0 and k["scrap"] == 2.0  # p0, p4 good; p2, p3 scrap
    assert k["quality"] == pytest.approx(2 / 5)
