from __future__ import annotations

import pytest

from twin.world import World


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
