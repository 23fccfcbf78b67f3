"""Shared fixtures for the loss and expression tests (kept small on purpose)."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share 2 cores with other jobs: one intra-op thread each."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator; every test that draws data is reproducible."""
    return np.random.default_rng(20240419)
