"""Equipment of a cell, one module per kind: conveyors, bins, stands (tables, pedestals)."""

from twin.equipment.bins import Bin
from twin.equipment.conveyor import Conveyor
from twin.equipment.stands import build_pedestal, build_table

__all__ = ["Bin", "Conveyor", "build_pedestal", "build_table"]
