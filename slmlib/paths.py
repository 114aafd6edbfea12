"""Where the course keeps its files. Everything is relative to the project folder."""
from __future__ import annotations

import os
from pathlib import Path

# SLM_COURSE_ROOT lets tests (and users with an unusual layout) point elsewhere.
ROOT = Path(os.environ.get("SLM_COURSE_ROOT", Path(__file__).resolve().parents[1]))
DATA_DIR = ROOT / "data"
MODELS_DIR = Path(os.environ.get("SLM_MODELS_DIR", ROOT / "models"))
OUTPUTS_DIR = Path(os.environ.get("SLM_OUTPUTS_DIR", ROOT / "outputs"))
