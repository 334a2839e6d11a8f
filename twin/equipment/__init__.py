"""Equipment of a cell, one module per kind: conveyors, bins, machines, stands (tables, pedestals)."""

from twin.equipment.bins import Bin
from twin.equipment.conveyor import Conveyor
from twin.equipment.machine import Machine
from twin.equipment.stands import build_pedestal, build_table

__all__ = ["Bin", "Conveyor", "Machine", "build_pedestal", "build_table"]
