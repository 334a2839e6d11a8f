from __future__ import annotations

import os
import sys

import pytest

from twin.world import World


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist, each worker's torch thread pool gets its share of the cores (one each
    with ``-n 2`` on 2 cores), and the processes its tests start get it as ``OMP_NUM_THREADS``
    and ``MKL_NUM_THREADS``. Pools as wide as the machine in every worker spin on the other
    workers' cores: on the 2-core machine that was about 8% of the suite's CPU time. Code that
    sets its own threads (a learner's ``share_cores``, the benches) still sets them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    # agents.common.runtime.usable_cores, which imports torch: here it must not load before the
    # pool's size is set
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = max(1, cores // workers)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(share))
    if "torch" in sys.modules:  # imported before this file: its pool is already made
        mine = os.environ["OMP_NUM_THREADS"]  # a user's own wins, where it is one number
        sys.modules["torch"].set_num_threads(int(mine) if mine.isdigit() and int(mine) > 0 else share)


_share_the_cores_between_workers()


@pytest.fixture
def world():
    """A headless world that always closes its client."""
    w = World()
    try:
        yield w
    finally:
        w.close()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
