"""Fixtures for the unit tests (the environment is set up by the root conftest.py)."""
import pytest

from slmlib.config import LevelConfig


@pytest.fixture
def tiny_config() -> LevelConfig:
    """A model and run small enough for a unit test (about a second)."""
    return LevelConfig("ultra_tiny", 1, stories=20, n_layer=1, n_head=2, n_embd=16, max_iters=30,
                       batch_size=4, block_size=32, eval_interval=10, eval_windows=16,
                       warmup_iters=5)
