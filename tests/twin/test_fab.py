"""Wafer handling: wafers rest in their slots, the paddle holds them by friction and vacuum and
lets them slip past that, contacts are particle events, chambers cycle, and bad tools are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.layouts import assert_refused, edited
from twin.cell import Twin
from twin.robots import wafer_robot


@pytest.fixture
def fab():
    twin = Twin("fab")
    try:
        twin.reset(np.random.default_rng(0))
        yield twin
    finally:
        twin.close()


def test_the_bundled_urdf_is_the_spec_s():
    assert wafer_robot.URDF_PATH.read_text() == wafer_robot.urdf(), "run python -m twin.robots.wafer_robot"


def test_wafers_rest_in_their_slots_touching_only_their_ledges(fab):
    for _ in range(40):
        fab.step()
    for w in fab.fab.wafers:
        assert w.place == w.home
        assert w.xyz[2] == pytest.approx(fab.fab.by_name[w.home[0]].heights[w.home[1]], abs=0.0015)
    assert not fab.log.events  # no contact events, nothing moved


def _wafer_on_paddle(twin: Twin, vacuum: bool):
    """The top wafer put on the retracted paddle, high above everything, vacuum on or off."""
    f = twin.fab
    robot, w = f.robot, f.wafers[-1]
    robot.reset((math.pi / 4, 0.3, 1.0))
    (x, y, z), _ = robot.pad_pose()
    twin.world.p.resetBasePositionAndOrientation(w.id, [x, y, z + 0.0015 + 0.0006], [0, 0, 0, 1])
    robot.vacuum(vacuum)
    for _ in range(5):
        robot.command(0, 0, 0)
        twin.step()
    return robot, w


def _slide(twin: Twin, robot, w, accel: float) -> float:
    """Millimetres the wafer slides on the paddle when it extends at ``accel`` m/s^2 to 0.3 m/s."""
    x0 = robot.to_paddle(w.xyz)[0]
    rate = 0.0
    while rate < 0.3:
        rate = min(0.3, rate + accel * twin.control_dt)
        robot.command(0, rate, 0)
        twin.step()
    return abs(robot.to_paddle(w.xyz)[0] - x0) * 1000


@pytest.mark.parametrize(("vacuum", "limit"), [(False, 0.3 * 9.81), (True, 0.3 * (9.81 + 1.0 / 0.128))])
def test_the_paddle_holds_a_wafer_up_to_its_friction_and_no_further(fab, vacuum, limit):
    # pads' friction 0.3 on the wafer's weight, plus the vacuum's 1 N pull when it is on
    robot, w = _wafer_on_paddle(fab, vacuum)
    assert robot.holding == (w.id if vacuum else None)
    assert _slide(fab, robot, w, 0.7 * limit) < 0.5
    robot, w = _wafer_on_paddle(fab, vacuum)
    assert _slide(fab, robot, w, 1.6 * limit) > 1.0


def test_a_jerky_move_makes_the_held_wafer_slip_and_is_logged(fab):
    robot, w = _wafer_on_paddle(fab, True)
    f = fab.fab
    w.held, w.place = False, None
    for _ in range(3):
        robot.command(0, 0.5, 0)  # full speed within one 50 ms step: 10 m/s^2
        fab.step()
    assert any(e.kind == "slipped" and e.part == w.name for e in fab.log.events)
    assert f.peak_accel > 5.0


def test_a_wafer_touching_a_wall_is_a_contact_event(fab):
    f = fab.fab
    w, station = f.wafers[0], f.by_name["cassette-0"]
    c, s = math.cos(station.yaw), math.sin(station.yaw)
    side = [station.xy[0] - s * 0.01, station.xy[1] + c * 0.01, station.heights[0] + 0.0008]  # 1 cm into a side wall
    fab.world.p.resetBasePositionAndOrientation(w.id, side, [0, 0, 0, 1])
    fab.step()
    assert any(
        e.kind == "wafer_contact" and e.part == w.name and e.detail == "cassette-0-walls" for e in fab.log.events
    )


def test_a_chamber_cycles_once_the_paddle_is_out(fab):
    f = fab.fab
    w = f.wafers[0]
    lock = f.by_name["chamber-LL"]
    fab.world.p.resetBasePositionAndOrientation(w.id, f.position(lock, 0), [0, 0, 0, 1])
    f.robot.reset((math.pi / 2, 0.7, 0.8 - 0.006))  # the paddle in the load lock, under the wafer
    for _ in range(10):
        fab.step()
    assert f.cycles["chamber-LL"].state == "waiting"
    for _ in range(25):  # back out to the retracted position
        f.robot.command(0, -0.4, 0)
        fab.step()
    assert f.cycles["chamber-LL"].state == "cycling"
    for _ in range(int(3.2 / fab.control_dt)):
        f.robot.command(0, 0, 0)
        fab.step()
    assert f.cycles["chamber-LL"].state == "done"
    assert w.stage == 1  # resting in the load lock: the first step of its route


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "diameter = 0.3 ",
            "diameter = 0.31 ",
            r"wafer\.diameter: a 310 mm wafer does not fit cassettes\[0\]'s 310 mm slots",
        ),
        ("wafers = 3", "wafers = 6", r"cassettes\[0\]\.wafers: 6 wafers do not fit in 5 slots"),
        ("pitch = 0.01", "pitch = 0.005", r"cassettes\[0\]\.pitch: 5\.0 mm leaves no room for the 3 mm paddle"),
        (
            'kind = "loadlock"\nposition = [0.0, 0.7]',
            'kind = "loadlock"\nslit_width = 0.3\nposition = [0.0, 0.7]',
            r"chambers\[0\]\.slit_width: a 300 mm wafer does not pass a 300 mm slit",
        ),
        (
            "position = [-0.7, 0.0]",
            "position = [-0.9, 0.0]",
            r"chambers\[1\]\.position: 0\.900 m from the robot's axis",
        ),
        (
            "position = [0.0, 0.7]\nyaw = -90",
            "position = [0.0, 0.7]\nyaw = 90",
            r"chambers\[0\]\.yaw: its opening must face the robot",
        ),
        (
            "position = [0.7, 0.0]\nyaw = 180",
            "position = [0.55, 0.0]\nyaw = 180",
            r"cassettes\[0\]\.position: its front is 0\.420 m from the robot's axis",
        ),
    ],
    ids=["wafer-larger-than-slot", "too-many-wafers", "pitch", "slit", "out-of-reach", "facing-away", "too-close"],
)
def test_bad_tools_are_refused_naming_the_field(tmp_path, old, new, message):
    assert_refused(tmp_path, edited("fab", old, new), message)
