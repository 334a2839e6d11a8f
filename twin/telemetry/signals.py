"""The signals a twin's telemetry samples: every asset's readings, named as a plant historian names
its tags (an asset, a signal on it, a unit).

The table is built once per twin from what its layout built, and reading it has no side effect:
it reads the state the last control step left (the same cached readings the task uses), draws no
random numbers and moves nothing, so a run recorded and the same run unrecorded are identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from twin.layout import FAULT_FAMILIES

MACHINE_STATES: tuple[str, ...] = ("idle", "loaded", "processing", "done", "blocked", "down")
"""A machine's ``state`` signal is the index of its state in this tuple (``twin.events.MachineState``)."""


def _beam(belt) -> float:
    """Whether the belt's light barrier is broken now, read with a ray of its own (the cell's last
    reading, which the task may act on, is left as it is)."""
    if belt.beam_blind:
        return math.nan
    beam = belt.beam
    return float(beam.world.p.rayTest(beam.start, beam.end)[0][0] >= 0)


@dataclass(frozen=True)
class Signal:
    asset: str
    """The asset's name in the layout's naming (``panda-0``, ``conveyor-0``, ``machine-0``)."""
    signal: str
    unit: str
    """SI units (``m``, ``m/s``, ``rad``), ``bool`` for 0/1 and ``state`` for an enumeration's index."""


class SignalTable:
    """Every signal of one twin, in a fixed order, and ``read()`` giving their values now."""

    def __init__(self, twin) -> None:
        self.signals: list[Signal] = []
        self._readers: list[Callable[[], Sequence[float]]] = []
        for arm in twin.robots:
            n = len(arm.arm_joints)
            cols = [(f"joint_{j}", "rad") for j in range(n)]
            cols += [("tool_x", "m"), ("tool_y", "m"), ("tool_z", "m"), ("tool_active", "bool")]
            self._add(arm.name, cols, lambda a=arm: (*a.joint_state()[0], *a.ee_xyz(), float(a.tool_active)))
        for name, belt in twin.conveyors.items():
            self._add(
                name,
                [("speed", "m/s"), ("running", "bool")],
                lambda b=belt: (b.config.speed * b.speed_scale if b.running else 0.0, float(b.running)),
            )
            if belt.beam is not None:  # its light barrier: NaN while a fault blinds it
                self._add(name, [("beam_blocked", "bool")], lambda b=belt: (_beam(b),))
        for machine in twin.machines:
            self._add(machine.name, [("state", "state")], lambda m=machine: (float(MACHINE_STATES.index(m.state)),))
        if twin.fleet is not None:
            for agv in twin.fleet.agvs:
                cols = [("x", "m"), ("y", "m"), ("yaw", "rad"), ("speed", "m/s"), ("turn_rate", "rad/s")]
                self._add(agv.name, cols, lambda a=agv: (*a.pose, *a.vel))
            for person in twin.fleet.people:
                self._add(person.name, [("x", "m"), ("y", "m")], lambda w=person: w.xy)
        if twin.fab is not None:
            robot = twin.fab.robot
            cols = [("theta", "rad"), ("extend", "m"), ("lift", "m"), ("vacuum", "bool")]
            self._add(robot.name, cols, lambda r=robot: (*r.joint_state()[0], float(r.vacuum_on)))
            for wafer in twin.fab.wafers:
                cols = [("x", "m"), ("y", "m"), ("z", "m"), ("held", "bool")]
                self._add(wafer.name, cols, lambda w=wafer: (*w.xyz, float(w.held)))
        if twin.disturbances is not None:
            self._add("cell", [(f"fault_{f}", "bool") for f in FAULT_FAMILIES], twin.fault_flags)

    def _add(self, asset: str, cols: list[tuple[str, str]], reader: Callable[[], Sequence[float]]) -> None:
        self.signals += [Signal(asset, name, unit) for name, unit in cols]
        self._readers.append(reader)

    def __len__(self) -> int:
        return len(self.signals)

    def read(self) -> np.ndarray:
        """Every signal's value now, in the table's order (float64)."""
        values = [v for reader in self._readers for v in reader()]
        if len(values) != len(self.signals):  # a reader and its columns disagree: a bug, said plainly
            raise RuntimeError(f"telemetry: {len(values)} values read for {len(self.signals)} signals")
        return np.asarray(values, dtype=np.float64)
