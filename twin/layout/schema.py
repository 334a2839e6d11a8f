"""The whole layout (``CellLayout``) and the checks that span its sections."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, model_validator

from twin.layout.base import Floor, Physics, _Model
from twin.layout.cell import (
    Bin,
    Camera,
    Conveyor,
    Defect,
    Feeder,
    Fixture,
    Insertion,
    Inspection,
    Machine,
    Part,
    Robot,
    Table,
    Tray,
)
from twin.layout.fab import Cassette, Chamber, Wafer, WaferRobot, check_fab
from twin.layout.logistics import AGV, Person, Rack, Station, Tote, Wall, check_floor
from twin.layout.variation import Faults, Randomization, check_variation


class CellLayout(_Model):
    """A factory cell: what stands where, and how the physics runs."""

    name: Annotated[str, Field(max_length=200)]
    """The cell's name (shown in reports)."""
    description: Annotated[str, Field(max_length=10_000)] = ""
    """What the cell is, in a sentence or two."""
    floor: Floor = Floor()
    """The floor the cell stands on."""
    physics: Physics = Physics()
    """Physics and control rates, gravity and the solver."""
    robots: list[Robot] = Field([], max_length=8)
    """Robot arms, named `MODEL-INDEX` (`panda-0`, `iiwa-1`) in the order given."""
    conveyors: list[Conveyor] = Field([], max_length=16)
    """Belts (`conveyor-0`, ...): parts ride them by contact."""
    parts: list[Part] = Field([], max_length=64)
    """The part catalogue: every part a feeder sends, a tray holds or a machine makes."""
    defects: list[Defect] = Field([], max_length=16)
    """Defect types that feeders may give parts (for inspection and sorting)."""
    feeders: list[Feeder] = Field([], max_length=16)
    """Seeded part streams onto the conveyors."""
    bins: list[Bin] = Field([], max_length=32)
    """Open boxes parts are placed in (`bin-0`, ...)."""
    tables: list[Table] = Field([], max_length=64)
    """Work tables (static boxes)."""
    trays: list[Tray] = Field([], max_length=32)
    """Trays with a grid of slots: input trays filled at reset, output trays."""
    machines: list[Machine] = Field([], max_length=32)
    """Machine stations with a load fixture (`machine-0`, ...)."""
    inspections: list[Inspection] = Field([], max_length=16)
    """Inspection stations over a belt."""
    insertions: list[Insertion] = Field([], max_length=8)
    """Peg-in-hole assembly stations."""
    fixtures: list[Fixture] = Field([], max_length=256)
    """Any URDF, placed in the cell."""
    cameras: list[Camera] = Field([], max_length=16)
    """Cameras, fixed or on a robot's tool."""
    agvs: list[AGV] = Field([], max_length=8)
    """AGVs on a logistics floor (`agv-0` is the task's; others shuttle)."""
    walls: list[Wall] = Field([], max_length=256)
    """Walls of a logistics floor."""
    racks: list[Rack] = Field([], max_length=256)
    """Racks of a logistics floor."""
    stations: list[Station] = Field([], max_length=32)
    """Roller stations where totes change hands."""
    tote: Tote = Tote()
    """The tote the AGVs carry."""
    people: list[Person] = Field([], max_length=32)
    """People walking the floor's aisles."""
    wafer: Wafer = Wafer()
    """The wafers of a cluster tool."""
    cassettes: list[Cassette] = Field([], max_length=8)
    """Wafer cassettes (FOUPs)."""
    chambers: list[Chamber] = Field([], max_length=16)
    """Load locks and process chambers."""
    wafer_robot: WaferRobot | None = None
    """The R-theta-Z wafer robot."""
    faults: Faults = Faults()
    """Seeded fault families (off unless named)."""
    randomization: Randomization = Randomization()
    """Per-episode variation (none by default)."""

    @model_validator(mode="after")
    def _references(self) -> CellLayout:
        part_names = [p.name for p in self.parts]
        dup = {n for n in part_names if part_names.count(n) > 1}
        if dup:
            raise ValueError(f"part names must be unique, repeated: {sorted(dup)}")
        cam_names = [c.name for c in self.cameras]
        if len(set(cam_names)) != len(cam_names):
            raise ValueError("camera names must be unique")
        for i, c in enumerate(self.cameras):
            if c.mount is not None and c.mount >= len(self.robots):
                raise ValueError(
                    f"cameras[{i}].mount: no robot {c.mount} to carry camera {c.name!r} (the layout has "
                    f"{len(self.robots)} robot(s), numbered from 0)"
                )
        conveyors = {f"conveyor-{i}" for i in range(len(self.conveyors))}
        for i, f in enumerate(self.feeders):
            if f.conveyor not in conveyors:
                raise ValueError(f"feeders[{i}].conveyor: no conveyor named {f.conveyor!r} (have {sorted(conveyors)})")
            unknown = sorted(set(f.mix) - set(part_names))
            if unknown:
                raise ValueError(f"feeders[{i}].mix: unknown parts {unknown} (catalogue: {part_names})")
            defect_names = [d.name for d in self.defects]
            unknown = sorted(set(f.defects) - set(defect_names))
            if unknown:
                raise ValueError(
                    f"feeders[{i}].defects: unknown defect types {unknown} (catalogue: {defect_names or 'none'})"
                )
            if f.defect_rate > 0 and not f.defects:
                raise ValueError(f"feeders[{i}].defects: a defect_rate above 0 needs at least one defect type")
        if len({d.name for d in self.defects}) != len(self.defects):
            raise ValueError("defect names must be unique")
        for i, ins in enumerate(self.inspections):
            self._check_inspection(i, ins, conveyors)
        for i, m in enumerate(self.machines):
            unknown = sorted({m.accepts, m.produces} - set(part_names))
            if unknown:
                raise ValueError(f"machines[{i}]: unknown parts {unknown} (catalogue: {part_names})")
            half = min(m.size[0], m.size[1]) / 2
            if max(abs(m.fixture_offset[0]), abs(m.fixture_offset[1])) + m.fixture_size / 2 > half:
                raise ValueError(f"machines[{i}].fixture_offset: the fixture must lie on the station's top")
        for i, t in enumerate(self.trays):
            if t.fill is None:
                if t.count is not None:
                    raise ValueError(f"trays[{i}].count: only a tray with fill is filled at reset")
                continue
            if t.fill not in part_names:
                raise ValueError(f"trays[{i}].fill: unknown part {t.fill!r} (catalogue: {part_names})")
            slots = t.grid[0] * t.grid[1]
            if t.count is not None and t.count > slots:
                raise ValueError(f"trays[{i}].count: {t.count} parts do not fit in {slots} slots")
            spec = self.part(t.fill)
            # the part, turned by up to its yaw jitter and shifted by the jitter, stays inside its slot
            side = spec.size[0] if spec.shape == "cylinder" else math.hypot(spec.size[0], spec.size[1])
            pitch = min(t.size[0] / t.grid[0], t.size[1] / t.grid[1])
            if side + 2 * t.jitter > pitch:
                raise ValueError(
                    f"trays[{i}].grid: slots of {pitch * 1000:.0f} mm cannot hold a {t.fill!r} "
                    f"({side * 1000:.0f} mm across, +-{t.jitter * 1000:.0f} mm jitter); use fewer slots or a larger tray"
                )
        hx, hy = self.floor.size[0] / 2, self.floor.size[1] / 2

        def off_floor(x: float, y: float) -> bool:
            return abs(x) > hx or abs(y) > hy

        for i, r in enumerate(self.robots):
            x, y, z = r.base.position
            if off_floor(x, y) or z < 0:
                raise ValueError(
                    f"robots[{i}].base.position: ({x}, {y}, {z}) is outside the floor "
                    f"(|x| <= {hx}, |y| <= {hy}, z >= 0)"
                )
        self._check_reach()
        check_floor(self)
        check_fab(self)
        check_variation(self)
        groups = (
            ("conveyors", self.conveyors),
            ("tables", self.tables),
            ("bins", self.bins),
            ("trays", self.trays),
            ("machines", self.machines),
        )
        for kind, items in groups:
            for i, item in enumerate(items):
                x, y = item.position[0], item.position[1]
                if off_floor(x, y):
                    raise ValueError(
                        f"{kind}[{i}].position: ({x}, {y}) is outside the floor (|x| <= {hx}, |y| <= {hy})"
                    )
                # the whole footprint stands on the floor, not only its centre
                if kind == "conveyors":
                    half, yaw = (item.length / 2, item.width / 2), math.radians(item.yaw)
                elif kind == "machines":
                    half, yaw = (item.size[0] / 2, item.size[1] / 2), math.radians(item.yaw)
                else:
                    half, yaw = (item.size[0] / 2, item.size[1] / 2), 0.0
                c, s = math.cos(yaw), math.sin(yaw)
                for sx in (-1, 1):
                    for sy in (-1, 1):
                        cx = x + c * sx * half[0] - s * sy * half[1]
                        cy = y + s * sx * half[0] + c * sy * half[1]
                        if off_floor(cx, cy):
                            raise ValueError(
                                f"{kind}[{i}]: its footprint reaches ({cx:.3g}, {cy:.3g}), beyond the floor "
                                f"(|x| <= {hx}, |y| <= {hy}); shrink it or enlarge floor.size"
                            )
        return self

    def _check_inspection(self, i: int, ins: Inspection, conveyors: set[str]) -> None:
        if ins.conveyor not in conveyors:
            raise ValueError(
                f"inspections[{i}].conveyor: no conveyor named {ins.conveyor!r} (have {sorted(conveyors)})"
            )
        conv = self.conveyors[int(ins.conveyor.rpartition("-")[2])]
        if ins.offset > conv.length:
            raise ValueError(f"inspections[{i}].offset: {ins.offset} m is beyond the belt's {conv.length} m length")
        cam = next((c for c in self.cameras if c.name == ins.camera), None)
        if cam is not None and cam.mount is not None:
            raise ValueError(
                f"inspections[{i}].camera: camera {ins.camera!r} rides on a robot; an inspection station needs a "
                "camera fixed over the belt"
            )
        if cam is None:
            raise ValueError(
                f"inspections[{i}].camera: no camera named {ins.camera!r} (have {[c.name for c in self.cameras]})"
            )
        yaw = math.radians(conv.yaw)
        d = (math.cos(yaw), math.sin(yaw))
        along = ins.offset - conv.length / 2
        line = [
            (conv.position[0] + d[0] * along - d[1] * w, conv.position[1] + d[1] * along + d[0] * w, conv.height)
            for w in (-conv.width / 2, 0.0, conv.width / 2)
        ]
        if not any(cam.sees(point) for point in line):
            raise ValueError(
                f"inspections[{i}].camera: camera {ins.camera!r} does not see the belt at the inspection line "
                f"(around ({line[1][0]:.3g}, {line[1][1]:.3g}, {line[1][2]:.3g})); aim it there"
            )

    def _check_reach(self) -> None:
        """Every machine fixture and tray slot lies within reach of at least one robot."""
        from twin.robots import MODELS, can_reach  # the robots' modules read this one

        for i, r in enumerate(self.robots):
            spec = MODELS[r.model]
            for j, (q, lo, hi) in enumerate(zip(r.home or (), spec.lower, spec.upper, strict=False)):
                if not lo <= q <= hi:
                    raise ValueError(
                        f"robots[{i}].home[{j}]: {q:g} rad is outside the {spec.title}'s joint limits [{lo:g}, {hi:g}]"
                    )

        def reachable(point: tuple[float, float, float]) -> bool:
            return any(can_reach(r.model, r.base.position, point) for r in self.robots)

        for i, m in enumerate(self.machines):
            point = (*m.fixture_xy, m.size[2] + 0.05)
            if not reachable(point):
                raise ValueError(
                    f"machines[{i}].position: its load fixture at ({point[0]:.3g}, {point[1]:.3g}) is out of "
                    "reach of every robot; move it (or a robot) closer"
                )
        for i, ins in enumerate(self.insertions):
            x, y, z = ins.position
            if not reachable((x, y, z + ins.block[2] + 0.05)):
                raise ValueError(
                    f"insertions[{i}].position: the hole at ({x:.3g}, {y:.3g}) is out of reach of every robot"
                )
            if not reachable((*ins.peg_start, z + ins.peg_length)):
                raise ValueError(
                    f"insertions[{i}].peg_start: the peg at ({ins.peg_start[0]:.3g}, {ins.peg_start[1]:.3g}) is out of "
                    "reach of every robot"
                )
            gap = math.dist(ins.peg_start, (x, y)) - max(ins.block[:2]) / 2 - ins.peg_width - ins.jitter
            if gap < 0.03:
                raise ValueError(f"insertions[{i}].peg_start: the peg must stand at least 3 cm clear of the hole block")
        for i, t in enumerate(self.trays):
            for x, y in t.slots():
                if not reachable((x, y, t.position[2] + 0.03)):
                    raise ValueError(
                        f"trays[{i}].position: its slot at ({x:.3g}, {y:.3g}) is out of reach of every robot; "
                        "move it (or a robot) closer"
                    )

    def defect(self, name: str) -> Defect:
        for d in self.defects:
            if d.name == name:
                return d
        raise KeyError(name)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)
