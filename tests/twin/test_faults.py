"""Faults and randomisation in the twin: refused when nonsensical, seeded, applied to the equipment
they name, logged with start and end, and counted in the KPIs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.layouts import assert_refused
from twin import Twin
from twin.events import EventLog
from twin.faults import compute_fault_kpis
from twin.layout import CellLayout, LayoutError, load_layout, with_variation
from twin.paths import LAYOUTS_DIR


def _with(name: str, faults: dict | None = None, randomization: dict | None = None) -> CellLayout:
    data = load_layout(name).model_dump()
    if faults is not None:
        data["faults"] = faults
    if randomization is not None:
        data["randomization"] = randomization
    return CellLayout.model_validate(data)


def _run(twin: Twin, seconds: float) -> None:
    for _ in range(round(seconds / twin.control_dt)):
        twin.step()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[faults.conveyor_jam]\nrate = -1\n", r"faults\.conveyor_jam\.rate: .*greater than or equal to 0"),
        ("[faults.machine_breakdown]\nmttr = 0\n", r"faults\.machine_breakdown\.mttr: .*greater than 0"),
        ("[faults.conveyor_jam]\nduration = [5, 2]\n", r"faults\.conveyor_jam: .*duration: low \(5\) is above high"),
        ("[faults.camera_fault]\nmodes = ['blurry']\n", r"faults\.camera_fault\.modes\[0\]: .*dropped"),
        ("[faults.meteor_strike]\n", r"faults\.meteor_strike: unknown key"),
        ("[randomization]\npart_mass = [2.0, 1.0]\n", r"randomization: .*part_mass: low \(2\) is above high \(1\)"),
        (
            "[randomization]\npart_mass = [0.0, 1.0]\n",
            r"randomization\.part_mass\[0\]: .*greater than or equal to 0\.1",
        ),
        ("[randomization]\nbelt_speed = [1.0, 9.0]\n", r"randomization\.belt_speed\[1\]: .*less than or equal to 3"),
        ("[randomization]\nlatency = [0, 50]\n", r"randomization\.latency\[1\]"),
    ],
    ids=[
        "rate<0",
        "mttr=0",
        "duration-order",
        "camera-mode",
        "unknown-family",
        "range-order",
        "mass-0",
        "speed",
        "lat",
    ],
)
def test_nonsense_is_refused_naming_file_and_field(tmp_path, section, message):
    assert_refused(tmp_path, (LAYOUTS_DIR / "default.toml").read_text() + "\n" + section, message)


def test_a_family_with_nothing_to_act_on_is_refused(tmp_path):
    text = (LAYOUTS_DIR / "default.toml").read_text() + "\n[faults.machine_breakdown]\n"
    assert_refused(tmp_path, text, r"faults\.machine_breakdown: this cell has nothing it acts on \(it acts on \[\[mach")
    with pytest.raises(LayoutError, match=r"unknown fault families \['jam'\]"):
        with_variation(load_layout("default"), ["jam"], None, "default")
    with pytest.raises(LayoutError, match=r"faults: expected 'layout', 'none', 'all'"):
        with_variation(load_layout("default"), "some", None, "default")


def test_faults_follow_the_seed_and_leave_the_part_stream_alone():
    nominal = Twin("default")
    jams = Twin(_with("default", {"conveyor_jam": {"rate": 20.0, "duration": [1.0, 2.0]}}))
    try:
        logs = []
        for twin, seed in ((nominal, 3), (jams, 3), (jams, 3), (jams, 4)):
            twin.reset(np.random.default_rng(seed))
            _run(twin, 20.0)
            logs.append(list(twin.log.events))
        arrivals = [[(e.t, e.part) for e in log if e.kind == "arrived"] for log in logs[:2]]
        assert arrivals[0] == arrivals[1] and arrivals[0]  # faults draw from a side stream
        faults = [[(e.kind, e.t, e.station) for e in log if e.kind.startswith("fault")] for log in logs[1:]]
        assert faults[0] == faults[1] and faults[0]  # the same seed: the same faults
        assert faults[0] != faults[2]  # another seed: others
        starts = [e for e in logs[1] if e.kind == "fault_start"]
        ends = [e for e in logs[1] if e.kind == "fault_end"]
        assert all(e.detail == "conveyor_jam" and e.station == "conveyor-0" for e in starts)
        assert all(1.0 - 0.051 <= e.value <= 2.0 + 0.051 for e in ends)  # lengths within the drawn range
    finally:
        nominal.close()
        jams.close()


def test_a_jam_stops_the_belt_and_its_parts():
    twin = Twin(_with("default", {"conveyor_jam": {"rate": 60.0, "duration": [3.0, 3.0]}}))
    try:
        twin.reset(np.random.default_rng(0))
        conv = twin.conveyors["conveyor-0"]
        moving = stopped = 0
        for _ in range(round(12.0 / twin.control_dt)):
            twin.step()
            on_belt = [p for p in twin.parts if p.state == "on_conveyor"]
            if not on_belt:
                continue
            speed = np.linalg.norm(on_belt[0].vel[:2])
            if conv.running:
                moving += speed > 0.5 * conv.config.speed
            else:
                stopped += 1
                assert speed < 0.02, speed  # a part on a jammed belt stands (after a step to settle)
        assert moving and stopped
        kpis = twin.kpis()
        assert (
            0 < kpis["availability"] < 1 and kpis["faults"] >= 1 and kpis["mttr_observed"] == pytest.approx(3.0, 0.05)
        )
    finally:
        twin.close()


def test_a_breakdown_stops_the_machine_and_counts_as_down_time():
    twin = Twin(_with("machine_tending", {"machine_breakdown": {"mtbf": 2.0, "mttr": 4.0, "distribution": "fixed"}}))
    try:
        twin.reset(np.random.default_rng(0))
        _run(twin, 10.0)
        states = [(e.t, e.detail) for e in twin.log.events if e.kind == "machine_state" and e.station == "machine-0"]
        assert (pytest.approx(2.0, abs=0.11), "down") in states
        kpis = twin.kpis()
        assert kpis["machine-0_availability"] < 1.0  # the OEE time model sees the down time
        assert kpis["mttr_observed"] == pytest.approx(4.0, abs=0.11)
    finally:
        twin.close()


def test_camera_faults_drop_freeze_and_add_noise():
    twin = Twin(_with("default"))
    try:
        twin.reset(np.random.default_rng(0))
        cam = next(iter(twin.cameras.values()))
        clean = cam.rgb()
        cam.fault = ("dropped", 25.0, np.random.default_rng(0))
        assert not cam.rgb().any()
        cam.fault = ("frozen", 25.0, np.random.default_rng(0))
        _run(twin, 2.0)
        assert np.array_equal(cam.rgb(), clean)
        cam.fault = ("noisy", 25.0, np.random.default_rng(0))
        assert 10 < np.abs(cam.rgb().astype(int) - clean.astype(int)).mean() < 40
        cam.fault = None
        assert not np.array_equal(cam.rgb(), np.zeros_like(clean))
    finally:
        twin.close()


def test_camera_faults_reach_every_frame_that_leaves_the_camera():
    """capture() (RGB, depth, segmentation) gives what the faulty camera gives, as rgb() does."""
    twin = Twin(_with("default"))
    try:
        twin.reset(np.random.default_rng(0))
        cam = next(iter(twin.cameras.values()))
        clean = cam.capture()
        assert (clean.segmentation >= 0).any() and clean.depth.min() < cam.config.far
        cam.fault = ("dropped", 25.0, np.random.default_rng(0))
        shot = cam.capture()
        assert not shot.rgb.any() and (shot.depth == cam.config.far).all() and (shot.segmentation == -1).all()
        cam.fault = ("frozen", 25.0, np.random.default_rng(0))
        _run(twin, 2.0)  # the arm and the parts move; the frozen camera does not see it
        shot = cam.capture()
        for got, want in zip(shot.__dict__.values(), clean.__dict__.values(), strict=True):
            assert np.array_equal(got, want)
        assert not np.array_equal(cam.rgb(), np.zeros_like(clean.rgb))  # rgb() freezes on the same frame
        assert np.array_equal(cam.rgb(), clean.rgb)
        cam.fault = ("noisy", 25.0, np.random.default_rng(0))
        shot = cam.capture()
        cam.fault = None
        now = cam.capture()
        assert 10 < np.abs(shot.rgb.astype(int) - now.rgb.astype(int)).mean() < 40
        rel = np.abs(shot.depth / now.depth - 1.0)
        assert 0.02 < rel.mean() < 0.2  # 25 of 255 levels: about 10% of each depth
        assert np.array_equal(shot.segmentation, now.segmentation)  # labels are the simulator's, not a sensor's
    finally:
        twin.close()


def test_grip_and_drive_faults_change_the_physics_and_are_undone():
    twin = Twin(_with("workbench", {"grasp_slip": {"rate": 60, "duration": [2, 2], "grip_scale": 0.25}}))
    try:
        twin.reset(np.random.default_rng(0))
        arm = twin.robots[0]
        finger = arm.tool.fingers[0]
        nominal = twin.world.p.getDynamicsInfo(arm.id, finger)[1]
        seen = set()
        for _ in range(round(8.0 / twin.control_dt)):
            twin.step()
            seen.add(round(twin.world.p.getDynamicsInfo(arm.id, finger)[1] / nominal, 3))
        assert seen == {1.0, 0.25}
        arm.set_speed(0.4)
        assert arm._gains == pytest.approx([0.4 * g for g in arm.spec.gains])
        twin.reset(np.random.default_rng(0))  # a reset ends every fault
        assert arm._gains == list(arm.spec.gains)
        assert twin.world.p.getDynamicsInfo(arm.id, finger)[1] == pytest.approx(nominal)
    finally:
        twin.close()


def test_out_of_spec_parts_arrive_larger_and_heavier_and_are_logged():
    twin = Twin(_with("default", {"out_of_spec": {"share": 1.0, "size_scale": 1.2, "mass_scale": [2.0, 2.0]}}))
    nominal = Twin("default")
    try:
        for t in (twin, nominal):
            t.reset(np.random.default_rng(5))
            _run(t, 15.0)
        arrived = [p for p in twin.parts if p.state != "parked"]
        assert arrived and all(p.scale == pytest.approx(1.2) for p in arrived)
        for p in arrived:
            base = next(q for q in nominal.parts if q.spec.name == p.spec.name and q.scale == 1.0)
            mass = twin.world.p.getDynamicsInfo(p.id, -1)[0]
            assert mass == pytest.approx(base.spec.mass * 1.2**3 * 2.0)
            lo, hi = twin.world.p.getAABB(p.id)
            lo0, hi0 = nominal.world.p.getAABB(base.id)
            assert hi[2] - lo[2] == pytest.approx(1.2 * (hi0[2] - lo0[2]), rel=0.05)
        logged = [e for e in twin.log.events if e.kind == "fault_start" and e.detail == "out_of_spec"]
        assert len(logged) == sum(e.kind == "arrived" for e in twin.log.events)
        assert twin.kpis()["parts_out_of_spec"] == len(logged)
    finally:
        twin.close()
        nominal.close()


def test_randomisation_stays_in_its_ranges_and_is_undone_by_a_nominal_reset():
    r = {"part_mass": [1.5, 2.0], "belt_speed": [0.5, 0.6], "base_position": 0.02, "base_yaw": 3.0}
    twin = Twin(_with("default", randomization=r))
    try:
        bases = set()
        for seed in range(4):
            twin.reset(np.random.default_rng(seed))
            conv = twin.conveyors["conveyor-0"]
            assert 0.5 <= conv.speed_scale <= 0.6
            arm = twin.robots[0]
            pos, _ = twin.world.p.getBasePositionAndOrientation(arm.id)
            assert np.abs(np.subtract(pos, arm.config.base.position)).max() <= 0.02 + 1e-9
            bases.add(tuple(np.round(pos, 6)))
            _run(twin, 8.0)
            for p in twin.parts:
                if p.state != "parked":
                    ratio = twin.world.p.getDynamicsInfo(p.id, -1)[0] / twin._base_spec[p.id].mass
                    assert 1.5 - 1e-6 <= ratio <= 2.0 + 1e-6
        assert len(bases) == 4
    finally:
        twin.close()


def test_fault_kpis_from_a_log():
    log = EventLog()
    log.add(1.0, "fault_start", detail="conveyor_jam", station="conveyor-0")
    log.add(4.0, "fault_end", detail="conveyor_jam", station="conveyor-0", value=3.0)
    log.add(6.5, "placed", "part-a-0")
    log.add(8.0, "fault_start", detail="camera_fault:frozen", station="top")  # still on at the end
    k = compute_fault_kpis(log, sim_time=10.0, equipment=2)
    assert k["faults"] == 2 and k["fault_time"] == pytest.approx(5.0)
    assert k["availability"] == pytest.approx(1 - 5.0 / 20.0)
    assert k["mtbf_observed"] == pytest.approx(15.0 / 2)
    assert k["mttr_observed"] == pytest.approx(3.0) and k["time_to_recover"] == pytest.approx(2.5)
