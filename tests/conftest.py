"""Shared test setup. Models and outputs go to a temp folder, never to the real models/."""
import os
import tempfile
from pathlib import Path

# Before slmlib is imported anywhere: its paths are read at import time.
_TMP = Path(tempfile.mkdtemp(prefix="slm-test-"))
os.environ.setdefault("SLM_MODELS_DIR", str(_TMP / "models"))
os.environ.setdefault("SLM_OUTPUTS_DIR", str(_TMP / "outputs"))
os.environ.setdefault("SLM_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from slmlib.config import LevelConfig  # noqa: E402


@pytest.fixture
def tiny_config() -> LevelConfig:
    """A model and run small enough for a unit test (about a second)."""
    return LevelConfig("ultra_tiny", 1, stories=20, n_layer=1, n_head=2, n_embd=16, max_iters=30,
                       batch_size=4, block_size=32, eval_interval=10, eval_iters=2,
                       final_eval_windows=16, warmup_iters=5)
