"""Where a line meets a cell's physics: its input (a feeder's belt or an input tray) and its
outputs (bins and output trays), on the cell's own ``Twin``."""

from __future__ import annotations

import numpy as np

from twin.cell import Twin
from twin.parts import Part


class LineError(ValueError):
    """A line that cannot be run (names the cell or buffer and what is wrong)."""


class CellPort:
    """A cell's input and outputs as a line sees them.

    Args:
        twin: The cell's twin (already reset once).
        cell: The cell's name in the line (for errors).
    """

    def __init__(self, twin: Twin, cell: str) -> None:
        self.twin = twin
        layout = twin.layout
        self.feeder = 0 if layout.feeders else None
        self.tray = next((t for t in twin.trays if t.count), None)
        if self.feeder is None and self.tray is None:
            raise LineError(f"cell {cell!r}: its layout has no feeder and no filled input tray for a buffer to feed")
        self.kind = "feeder" if self.feeder is not None else "tray"
        self.outputs = {b.name: b.config.accepts != "defective" for b in twin.bins}
        self.outputs |= {t.name: True for t in twin.trays if not t.count}
        """Receptacle name -> whether a part set down in it is good (a reject bin's are scrap)."""
        if not self.outputs:
            raise LineError(f"cell {cell!r}: its layout has no bin or output tray for the line to take parts from")
        self.produces = {m.config.produces for m in twin.machines}
        """With machines, only their products are good output (a raw part set down there is scrap)."""
        if self.kind == "feeder":
            f = layout.feeders[0]
            self.types = sorted(f.mix)
            self._mix = np.array([f.mix[k] for k in self.types], dtype=float)
            self._defects = sorted(f.defects)
            self._defect_w = np.array([f.defects[k] for k in self._defects], dtype=float)
            self.defect_rate = f.defect_rate
            """Share of the parts brought in that carry a defect (drawn as the feeder draws them)."""
            self._jitter = (f.lateral_jitter, np.radians(f.yaw_jitter))
        else:
            self.defect_rate = 0.0
            self.types = [self.tray.config.fill]
            self._jitter = (0.0, np.radians(self.tray.config.yaw_jitter))

    def empty(self) -> None:
        """Retire every part the cell's reset brought in (its own seeded stream, its filled tray):
        in a line, parts come only from the source or the buffer before it."""
        for part in self.twin.parts:
            if part.state in ("queued", "stored", "on_conveyor"):
                self.twin.retire(part)
        self.twin._next_arrival = np.inf

    def admit(self, rng: np.random.Generator) -> Part | None:
        """Bring a part into the cell's input now (its type and defect drawn as the cell's feeder
        draws them), or None when the input has no room or the cell has no parked body to spare."""
        twin = self.twin
        if self.kind == "feeder":
            kind = self.types[int(rng.choice(len(self.types), p=self._mix / self._mix.sum()))]
            defect = None
            if self.defect_rate > 0 and rng.uniform() < self.defect_rate:
                defect = self._defects[int(rng.choice(len(self._defects), p=self._defect_w / self._defect_w.sum()))]
            lateral = float(rng.uniform(-self._jitter[0], self._jitter[0]))
            yaw = float(rng.uniform(-self._jitter[1], self._jitter[1]))
            part = self._parked(kind, defect)
            if part is None:
                return None
            twin.feed(part, self.feeder, lateral, yaw)
            return part
        part = self._parked(self.types[0], None)
        if part is None:
            return None
        yaw = float(rng.uniform(-self._jitter[1], self._jitter[1]))
        return part if twin.stock(part, self.tray, yaw) else None

    def _parked(self, kind: str, defect: str | None) -> Part | None:
        for part in self.twin.parts:
            if part.state == "parked" and part.spec.name == kind and part.defect == defect and part.scale == 1.0:
                return part
        return None

    def outcome(self, part: Part) -> str | None:
        """``good`` or ``scrap`` once ``part`` has left the cell's process (set down in an output,
        or lost), None while it is still in process."""
        if part.state == "placed" and part.location in self.outputs:
            good = self.outputs[part.location] and (not self.produces or part.spec.name in self.produces)
            return "good" if good else "scrap"
        if part.state in ("missed", "lost"):
            return "scrap"
        return None
