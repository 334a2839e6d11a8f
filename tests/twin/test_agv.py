"""AGVs on a logistics floor: wheel physics, odometry, the range scanner, tote hand-over by
rollers, people, collisions, and the layout checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.layouts import assert_refused, edited
from twin.cell import Twin
from twin.layout import load_layout
from twin.robots import agv as agv_module

OPEN_FLOOR = """
name = "open"
[floor]
size = [20.0, 20.0]
[physics]
substeps = 24
[[agvs]]
position = [0.0, 0.0]
scanner = { beams = 72, noise = 0.0 }
[[agvs]]
position = [-6.0, 6.0]
yaw = 90
scanner = { beams = 36, noise = 0.0, fov = 180 }
[[walls]]
start = [4.0, -3.0]
end = [4.0, 3.0]
"""


@pytest.fixture
def open_floor(tmp_path):
    path = tmp_path / "open.toml"
    path.write_text(OPEN_FLOOR)
    twin = Twin(load_layout(path))
    try:
        twin.reset(np.random.default_rng(0))
        yield twin
    finally:
        twin.close()


@pytest.fixture
def floor():
    twin = Twin("logistics")
    try:
        twin.reset(np.random.default_rng(0))
        yield twin
    finally:
        twin.close()


def test_the_bundled_urdf_is_the_spec_s():
    assert agv_module.URDF_PATH.read_text() == agv_module.urdf(), "run python -m twin.robots.agv"


def test_wheels_drive_it_at_the_commanded_speed_and_odometry_follows(open_floor):
    agv = open_floor.fleet.agvs[0]
    for _ in range(40):  # 4 s at 0.8 m/s (reached within 0.8 s at 1 m/s^2)
        agv.command(0.8, 0.0)
        open_floor.step()
    x, y, th = agv.pose
    assert agv.vel[0] == pytest.approx(0.8, rel=0.03)
    assert x == pytest.approx(0.8 * 4 - 0.8**2 / 2, abs=0.08) and abs(y) < 0.02 and abs(th) < 0.02
    assert math.dist(agv.odom[:2], (x, y)) < 0.02 * x  # within 2% of the distance driven
    assert agv.distance == pytest.approx(x, rel=0.02) and agv.energy > 0
    for _ in range(30):
        agv.command(0.0, 1.0)
        open_floor.step()
    assert agv.vel[1] == pytest.approx(1.0, rel=0.05)
    assert abs(agv.odom[2] - agv.pose[2]) < 0.1


def test_the_scanner_reads_the_distance_to_a_wall_and_batches_agree(open_floor):
    fleet = open_floor.fleet
    ahead = fleet.scans[0][0]  # beam 0 looks straight ahead, at the wall 4 m away (0.05 m thick)
    assert ahead == pytest.approx(4.0 - 0.05, abs=0.01)
    behind = fleet.scans[0][36]
    assert behind == pytest.approx(agv_module.SPEC and fleet.agvs[0].config.scanner.max_range)
    alone = [fleet.scanners.read([a.pose for a in fleet.agvs])[i] for i in range(2)]
    for batched, single in zip(fleet.scans, alone, strict=True):
        np.testing.assert_allclose(batched, single)
    assert len(fleet.scans[1]) == 36


def _dock(twin: Twin, station: str, off: float = 0.0) -> None:
    """Put the AGV at a station's dock (``off`` metres along its heading from it)."""
    fleet = twin.fleet
    x, y, th = fleet.docks[station]
    p = twin.world.p
    p.resetBasePositionAndOrientation(
        fleet.agvs[0].id, [x + off * math.cos(th), y + off * math.sin(th), 0.0], p.getQuaternionFromEuler([0, 0, th])
    )


def test_a_docked_agv_takes_the_tote_on_by_its_rollers(floor):
    fleet = floor.fleet
    tote = fleet.totes[0]
    _dock(floor, "P")
    track = []
    for _ in range(80):
        floor.step()
        track.append(tote.xyz[0])
        if tote.state == "on_agv":
            break
    assert tote.state == "on_agv"
    steps = np.diff(track)
    assert steps.max() < 0.06, "the tote moved by rolling, not in a jump"
    lx, ly = fleet.agvs[0].to_local(tote.xyz)
    assert abs(lx) < 0.05 and abs(ly) < 0.02
    assert tote.xyz[2] == pytest.approx(agv_module.SPEC.deck_height + fleet.tote_half[2], abs=0.01)
    kinds = [e.kind for e in floor.log.events]
    assert kinds.count("docked") == 1 and kinds.count("loaded") == 1
    # carried: it rides along as the AGV drives away and turns
    for _ in range(40):
        fleet.agvs[0].command(0.8, 0.4)
        floor.step()
    assert tote.state == "on_agv" and abs(fleet.agvs[0].to_local(tote.xyz)[1]) < 0.05


def test_an_agv_short_of_the_dock_gets_nothing(floor):
    _dock(floor, "P", off=-0.08)
    for _ in range(40):
        floor.step()
    assert floor.fleet.totes[0].state == "waiting"
    assert "docked" not in [e.kind for e in floor.log.events]


def test_people_walk_seeded_paths():
    def walk(seed: int) -> list[tuple[float, float]]:
        twin = Twin("logistics")
        try:
            twin.reset(np.random.default_rng(seed))
            out = []
            for _ in range(30):
                twin.step()
                out += [w.xy for w in twin.fleet.people]
            return out
        finally:
            twin.close()

    a, b, c = walk(1), walk(1), walk(2)
    assert a == b and a != c
    assert all(abs(x - xs) < 1e-9 for (x, _), xs in zip(a, [-3.1, 3.1] * 30, strict=True))  # on their paths


def test_running_into_a_person_is_a_collision_and_too_close_is_counted(floor):
    fleet = floor.fleet
    person = fleet.people[0]
    person.speed = 0.0  # standing in the aisle
    p = floor.world.p
    x, y = person.xy
    p.resetBasePositionAndOrientation(fleet.agvs[0].id, [x - 1.2, y, 0.0], [0, 0, 0, 1])
    for _ in range(20):
        fleet.agvs[0].command(1.0, 0.0)
        floor.step()
    assert any(e.kind == "collision" and e.detail.startswith("person") for e in floor.log.events)
    k = floor.kpis()
    assert k["agv_collisions"] >= 1 and k["min_person_distance"] < 0.05 and k["safety_field_time"] > 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "position = [6.2, 2.8]\nyaw = 180",
            "position = [7.5, 2.8]\nyaw = 180",
            r"stations\[2\]\.position: reaches .* beyond the floor",
        ),
        (
            "position = [-5.27, -1.0]",
            "position = [0.0, 1.9]",
            r"agvs\[0\]\.position: an AGV at \(0, 1.9\) would stand inside racks\[0\]",
        ),
        (
            "[[agvs]]\nposition = [-5.27, -1.0]\nyaw = 90",
            "[[agvs]]\nposition = [-5.27, -1.0]\nyaw = 90\nscanner = { beams = 0 }",
            r"agvs\[0\]\.scanner\.beams: Input should be greater than or equal to 1",
        ),
        (
            'kind = "pickup"\nposition = [-6.2, 0.0]',
            'kind = "pickup"\nheight = 0.6\nposition = [-6.2, 0.0]',
            r"stations\[0\]\.height: 0.6 m, but the AGVs' deck is 0.35 m high",
        ),
        (
            'name = "logistics"',
            'name = "logistics"\ntote = { size = [0.4, 0.6, 0.2] }',
            r"tote\.size: a tote 0.6 m across does not fit stations\[0\]",
        ),
        ("position = [-6.3, -3.2]", "position = [-2.0, -3.2]", r"stations\[3\]: its dock .* is blocked by"),
        ("path = [[-3.1, -3.6], [-3.1, 3.6]]", "path = [[-3.1, -3.6], [-9.1, 3.6]]", r"people\[0\]\.path: reaches"),
    ],
    ids=[
        "station-off-floor",
        "agv-in-rack",
        "scanner-no-beams",
        "station-height",
        "tote-too-wide",
        "dock-blocked",
        "path-off-floor",
    ],
)
def test_bad_floors_are_refused_naming_the_field(tmp_path, old, new, message):
    assert_refused(tmp_path, edited("logistics", old, new), message)
