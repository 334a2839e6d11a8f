"""A line of cells joined by buffers, as a line layout file writes it down (``[line]``).

A line is serial: raw parts come from its source into the first cell; each cell's output goes
through one buffer into the next cell's input; the last cell's output leaves the line. Each cell
is one of the twin's cells (a task's bundled layout, or a layout file) run in its own physics
world; the buffers, the source and the line's clock are the line's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError

from twin.layout.base import MAX_LAYOUT_BYTES, LayoutError, _Model
from twin.layout.files import _format_errors, find_bundled, parse_toml, read_bounded
from twin.paths import ASSETS_DIR

LINES_DIR = ASSETS_DIR / "lines"

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
LineSeconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False, json_schema_extra={"unit": "s"})]


class LineCell(_Model):
    name: Name
    """The cell's name in the line (events, KPIs, buffers and sweeps name it so)."""
    env: Annotated[str, Field(min_length=1, max_length=128)]
    """The task run in this cell (an env id such as ``ConveyorPick-v1``); its scripted expert works it."""
    layout: str | None = None
    """A cell layout file to build instead of the task's bundled one (relative to the line file)."""
    wip_limit: Annotated[int, Field(ge=1, le=16)] = 1
    """Parts the cell takes in at once (in process, plus finished ones waiting for the buffer)."""
    ideal_cycle_time: LineSeconds
    """Seconds per part at the cell's rated speed (the OEE performance's ideal cycle time)."""
    faults: list[str] = Field(default_factory=list)
    """Fault families the cell runs with (``conveyor_jam``, ``machine_breakdown``, ...; see the
    layout's ``[faults]``), seeded per run; none by default."""
    knobs: dict[str, float | int | str | bool] = Field(default_factory=dict)
    """Settings of the cell's task, as its env takes them and in its units (ConveyorPick's
    ``belt_speed``, ``arrival_interval``; ``twin envs`` and the task reference list each task's);
    what a sweep varies as ``cell.<k>.<knob>``."""


class LineBuffer(_Model):
    from_cell: Annotated[str, Field(alias="from", min_length=1)]
    """The cell whose output feeds the buffer."""
    to_cell: Annotated[str, Field(alias="to", min_length=1)]
    """The cell whose input the buffer feeds."""
    capacity: Annotated[int, Field(ge=1, le=1000)] = 2
    """Parts the buffer holds, those still in transfer included; a full buffer blocks its upstream cell."""
    transfer_time: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False, json_schema_extra={"unit": "s"})] = 2.0
    """Seconds from a part leaving the upstream cell to its being ready for the downstream one."""


class LineSource(_Model):
    interval: tuple[LineSeconds, LineSeconds] = (5.0, 7.0)
    """Seconds between raw parts offered to the first cell, drawn uniformly; a part offered while the
    first cell is full waits for it."""


class Line(_Model):
    name: Name
    """The line's name (fits and sweeps record it)."""
    description: str = ""
    source: LineSource = LineSource()
    """Where raw parts come from."""
    cells: Annotated[list[LineCell], Field(min_length=1, max_length=32)]
    """The cells, in any order (the buffers put them in line order)."""
    buffers: Annotated[list[LineBuffer], Field(max_length=31)] = Field(default_factory=list)
    """The buffers joining each cell's output to the next cell's input."""

    def problems(self) -> list[str]:
        """What keeps the cells and buffers from being one serial line (field paths under ``line``)."""
        names = [c.name for c in self.cells]
        problems = []
        seen = set()
        for i, n in enumerate(names):
            if n in seen:
                problems.append(f"line.cells[{i}].name: {n!r} names two cells")
            seen.add(n)
        outgoing: dict[str, int] = {}
        incoming: dict[str, int] = {}
        for i, b in enumerate(self.buffers):
            for key, ref in (("from", b.from_cell), ("to", b.to_cell)):
                if ref not in seen:
                    problems.append(f"line.buffers[{i}].{key}: no cell named {ref!r} (cells: {', '.join(names)})")
            if b.from_cell == b.to_cell:
                problems.append(f"line.buffers[{i}]: feeds cell {b.from_cell!r} from itself (a cycle)")
            if b.from_cell in outgoing:
                problems.append(
                    f"line.buffers[{i}].from: cell {b.from_cell!r} already feeds buffers[{outgoing[b.from_cell]}] "
                    "(a line is serial: one buffer out of each cell)"
                )
            if b.to_cell in incoming:
                problems.append(
                    f"line.buffers[{i}].to: cell {b.to_cell!r} is already fed by buffers[{incoming[b.to_cell]}] "
                    "(a line is serial: one buffer into each cell)"
                )
            outgoing.setdefault(b.from_cell, i)
            incoming.setdefault(b.to_cell, i)
        if not problems:
            order = self._order(outgoing, incoming)
            if isinstance(order, str):
                problems.append(order)
        return problems

    def _order(self, outgoing: dict[str, int], incoming: dict[str, int]) -> list[str] | str:
        """The cells from the source to the end, or what is wrong with the chain."""
        heads = [c.name for c in self.cells if c.name not in incoming]
        if len(heads) != 1:
            if not heads:
                return "line.buffers: every cell is fed by a buffer, so the buffers form a cycle and no cell takes the source"
            return (
                f"line.buffers: cells {', '.join(map(repr, heads))} are fed by no buffer; only the first cell takes the "
                "source (join each other cell's input to a buffer)"
            )
        order, at = [heads[0]], heads[0]
        while at in outgoing:
            at = self.buffers[outgoing[at]].to_cell
            if at in order:
                return f"line.buffers: the buffers form a cycle through cell {at!r}"
            order.append(at)
        if len(order) != len(self.cells):
            left = [c.name for c in self.cells if c.name not in order]
            return f"line.buffers: cells {', '.join(map(repr, left))} are not on the line from {heads[0]!r} (a cycle among them)"
        return order

    def ordered(self) -> tuple[list[LineCell], list[LineBuffer]]:
        """Cells in line order, and buffer ``k`` between cell ``k`` and cell ``k + 1``."""
        by_name = {c.name: c for c in self.cells}
        by_from = {b.from_cell: b for b in self.buffers}
        head = next(c.name for c in self.cells if c.name not in {b.to_cell for b in self.buffers})
        cells, at = [by_name[head]], head
        while at in by_from:
            at = by_from[at].to_cell
            cells.append(by_name[at])
        return cells, [by_from[c.name] for c in cells[:-1]]


class LineFileError(LayoutError):
    """A line file that cannot be used; the message names the file and each offending field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(source, problems)
        lines = "\n".join(f"  {p}" for p in problems)
        self.args = (f"{source}: invalid line ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}",)

    def __str__(self) -> str:
        return self.args[0]


class LineFile(_Model):
    line: Line


def parse_line(data: dict, source: str = "<line>") -> Line:
    """Validate a line layout given as a dict (with its ``[line]`` table)."""
    try:
        line = LineFile.model_validate(data).line
    except ValidationError as err:
        raise LineFileError(source, _format_errors(err)) from None
    except RecursionError:
        raise LineFileError(source, ["nested too deeply"]) from None
    problems = line.problems()
    if problems:
        raise LineFileError(source, problems)
    return line


def find_line(name_or_path: str | Path) -> Path:
    """A line layout by path, or by name among the bundled lines (``assets/lines``)."""
    return find_bundled(name_or_path, LINES_DIR, "line")


def load_line(name_or_path: str | Path) -> Line:
    """Read and validate a line layout TOML file (a path, or a bundled line's name)."""
    path = find_line(name_or_path)
    source = str(path)
    raw = read_bounded(path, MAX_LAYOUT_BYTES, lambda problem: LineFileError(source, [problem]))
    return parse_line(parse_toml(raw, lambda problem: LineFileError(source, [problem])), source)


def line_hash(name_or_path: str | Path) -> str:
    """SHA-256 of a line file's bytes (recorded with fits and results)."""
    return hashlib.sha256(find_line(name_or_path).read_bytes()).hexdigest()
