"""Robot arms, one module per robot: its numbers (joints, limits, home pose, tool links) in one place."""

from twin.robots.panda import Panda

__all__ = ["Panda"]
