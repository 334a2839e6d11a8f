"""End-of-arm tools, one module each; any arm in ``twin.robots`` can carry either.

A tool is two things: a URDF fragment that an arm's model mounts on its flange (links, joints,
collision geometry), and the runtime behaviour once the arm is loaded (commanding it, telling
which part it holds). Tool-specific numbers (finger travel, cup size, tool centre point offset)
live in the tool's module.
"""

from __future__ import annotations

from twin.tools.parallel_gripper import ParallelGripper
from twin.tools.suction import SuctionCup

TOOLS = {"parallel_gripper": ParallelGripper, "suction": SuctionCup}
"""Tool classes by the layout's ``tool`` name."""

__all__ = ["TOOLS", "ParallelGripper", "SuctionCup"]
