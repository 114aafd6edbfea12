"""Does the lesson hold on this machine? Each promise of the course, checked on a real run.

`make course` ends with this report, computed from the models it just trained, so an
instructor sees at a glance whether the class will see what the lessons say. The guard test
(tests/test_lesson_holds.py) runs the overfitting half at the default settings.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .checkpoint import default_path, load_model
from .config import LEVELS
from .data import load_data
from .history import History
from .metrics import recital
from .paths import MODELS_DIR
from .tables import format_table

BEST_BY = 0.6  # the best validation step comes at most 60% of the way through the run ...
RISE = {"ultra_tiny": 0.3, "tiny": 0.2}  # ... and validation loss then rises at least this much
GAP_AT_LEAST = {"ultra_tiny": 3.0, "tiny": 1.5}
GAP_AT_MOST = {"medium": 0.05, "large": 0.05}
FLOOR_MARGIN = 0.1  # ultra_tiny's final training loss: at most the floor + this
RECITAL_RATIO = 2.0  # training stories recited at least this many times better than unseen ones
VAL_STEP = 0.1  # from small up, each level's validation loss at least this much below the last
LARGE_ABOVE_FLOOR = 0.45


def _check(claim: str, held: bool, measured: str) -> dict:
    return {"claim": claim, "held": "held" if held else "DID NOT HOLD", "measured": measured}


def overfitting_checks(histories: Mapping[str, History], floor: float,
                       recitals: Mapping[str, dict]) -> list[dict]:
    """Levels 1-2: the U-turn, the gap, the floor, the recital."""
    checks = []
    for name, history in histories.items():
        if name not in RISE:
            continue
        total, best, rise = history.records[-1]["iter"], history.best, history.overfit_by
        checks.append(_check(
            f"{name}: validation loss turns up (best by {BEST_BY:.0%} of the run, then +{RISE[name]} or more)",
            best["iter"] <= BEST_BY * total and rise >= RISE[name],
            f"best {best['val_loss']:.3f} at step {best['iter']}/{total}, then {rise:+.3f}"))
        checks.append(_check(f"{name}: gap at least {GAP_AT_LEAST[name]}", history.gap >= GAP_AT_LEAST[name],
                             f"gap {history.gap:+.3f}"))
        if name == "ultra_tiny":
            train_loss = history.final["train_loss"]
            checks.append(_check(f"ultra_tiny: training loss at most the entropy floor + {FLOOR_MARGIN}",
                                 train_loss <= floor + FLOOR_MARGIN,
                                 f"train {train_loss:.3f}, floor {floor:.3f}"))
        if name in recitals:
            r = recitals[name]
            checks.append(_check(
                f"{name}: recites training stories at least {RECITAL_RATIO:g}x better than unseen ones",
                r["train"]["matched_words"] >= RECITAL_RATIO * max(r["unseen"]["matched_words"], 0.1),
                f"{r['train']['matched_words']:.2f} vs {r['unseen']['matched_words']:.2f} words "
                f"of {r['continue_words']} right"))
    return checks


def ladder_checks(histories: Mapping[str, History], floor: float) -> list[dict]:
    """Across the five levels: gaps fall, the big levels do not overfit, more data helps."""
    names = [n for n in LEVELS if n in histories]
    gaps = [histories[n].gap for n in names]
    checks = [_check("gaps fall from level to level", all(a > b for a, b in zip(gaps, gaps[1:])),
                     " > ".join(f"{g:+.3f}" for g in gaps))]
    for name, limit in GAP_AT_MOST.items():
        if name in histories:
            checks.append(_check(f"{name}: gap at most {limit}", histories[name].gap <= limit,
                                 f"gap {histories[name].gap:+.3f}"))
    upper = [n for n in ("small", "medium", "large") if n in histories]
    vals = [histories[n].final["val_loss"] for n in upper]
    if len(vals) > 1:
        checks.append(_check(f"validation loss falls by {VAL_STEP}+ from each level to the next, small up",
                             all(a - b >= VAL_STEP for a, b in zip(vals, vals[1:])),
                             " > ".join(f"{v:.3f}" for v in vals)))
    if "large" in histories:
        above = histories["large"].final["val_loss"] - floor
        checks.append(_check(f"large: validation loss within {LARGE_ABOVE_FLOOR} of the entropy floor",
                             above <= LARGE_ABOVE_FLOOR, f"{above:.3f} above the floor"))
    return checks


def level_recital(name: str, model, vocab, data=None, n: int = 20) -> dict:
    """The recital test of a level's model on its own training stories and on unseen ones."""
    data = data if data is not None else load_data(LEVELS[name])
    return recital(model, vocab, data.train_texts, data.val_texts, n=n)


def check_lesson(models_dir: Path | str = MODELS_DIR) -> list[dict]:
    """Every check, from the levels' saved models; a missing model is a check that did not hold."""
    histories, recitals, checks, floor = {}, {}, [], None
    for name, cfg in LEVELS.items():
        path = default_path(cfg, models_dir)
        if not path.is_file():
            checks.append(_check(f"{name}: trained model present", False, f"missing {path}"))
            continue
        model, info = load_model(path)
        histories[name] = info["history"]
        floor = floor or info["data_stats"].get("floor", {}).get("val")
        if name in RISE:
            recitals[name] = level_recital(name, model, info["vocab"])
    if floor is None:
        return checks
    return checks + overfitting_checks(histories, floor, recitals) + ladder_checks(histories, floor)


def format_checks(checks: list[dict]) -> str:
    held = sum(c["held"] == "held" for c in checks)
    return (format_table(checks, ["claim", "held", "measured"])
            + f"\n\n{held} of {len(checks)} held.")
