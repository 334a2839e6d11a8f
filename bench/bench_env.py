"""Speed figures for the envs, one ``name value unit`` line each (same as ``twin bench``).

Usage: python bench/bench_env.py [--env ID] [--steps N] [--repeats R] [--procs P]
"""

from __future__ import annotations

import sys

from agents.cli import run

if __name__ == "__main__":
    sys.exit(run(["bench", *sys.argv[1:]]))
