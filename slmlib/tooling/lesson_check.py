"""Does the lesson hold on this machine? Each promise of the course, checked on a real run.

`make course` ends with this report, computed from the models it just trained, so an
instructor sees at a glance whether the class will see what the lessons say. The guard test
(tests/test_lesson_holds.py) runs the overfitting half at the default settings.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .. import paths
from ..checkpoint import default_path, load_model
from ..config import LEVELS
from ..data import load_data
from ..history import History
from ..metrics import recital
from ..tables import format_table

BEST_BY = 0.6  # the best validation step comes at most 60% of the way through the run ...
RISE = {"ultra_tiny": 0.3, "tiny": 0.2}  # ... and validation loss then rises at least this much
GAP_AT_LEAST = {"ultra_tiny": 3.0, "tiny": 1.5}
GAP_AT_MOST = {"medium": 0.05, "large": 0.05}
BELOW_FLOOR = 0.3  # ultra_tiny's final training loss: at least this far below its training stories' floor
# The recital, word for word: (at least this many of 20 words on training stories, at most this many
# on unseen ones, at least this share of training stories continued exactly)
RECITAL = {"ultra_tiny": (15, 2, 0.5), "tiny": (8, 2, None)}
VAL_STEP = 0.1  # from small up, each level's validation loss at least this much below the last
LARGE_ABOVE_FLOOR = 0.45
FLAT = 0.02  # "flattened": less than this gained over the last fifth of the run


def _check(claim: str, held: bool, measured: str) -> dict:
    return {"claim": claim, "held": "held" if held else "DID NOT HOLD", "measured": measured}


def overfitting_checks(histories: Mapping[str, History], floor: float,
                       recitals: Mapping[str, dict], train_floors: Mapping[str, float] | None = None) -> list[dict]:
    """Levels 1-2: the U-turn, the gap, below the floor, the word-for-word recital."""
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
            train_floor = (train_floors or {}).get(name, floor)
            checks.append(_check(f"ultra_tiny: training loss at least {BELOW_FLOOR} below its stories' entropy floor",
                                 train_loss <= train_floor - BELOW_FLOOR,
                                 f"train {train_loss:.3f}, floor of its training stories {train_floor:.3f}"))
        if name in recitals:
            r, (train_at_least, unseen_at_most, exact) = recitals[name], RECITAL[name]
            t, u = r["train"], r["unseen"]
            n = r["continue_words"]
            held = t["matched_words"] >= train_at_least and u["matched_words"] <= unseen_at_most
            claim = (f"{name}: recites training stories ({train_at_least}+ of {n} words right) "
                     f"but not unseen ones ({unseen_at_most} or fewer)")
            if exact is not None:
                held = held and t["exact_share"] >= exact
                claim += f", {exact:.0%}+ of training stories word for word"
            checks.append(_check(claim, held,
                                 f"{t['matched_words']:.2f} vs {u['matched_words']:.2f} words; "
                                 f"word for word {t['exact_share']:.0%} vs {u['exact_share']:.0%}"))
    return checks


def step_limited_checks(histories: Mapping[str, History]) -> list[dict]:
    """Levels 3-5: lessons 05-07 say whether the level's validation loss flattened or was still falling."""
    checks = []
    for name in ("small", "medium", "large"):
        if name in histories:
            gain = histories[name].fell_over_last_fifth
            said = STEP_LIMITED.get(name)
            what = "still falling at the end (limited by steps)" if said else "flattened"
            checks.append(_check(f"{name}: validation loss {what}, as lesson {LESSON[name]} says",
                                 (gain >= FLAT) if said else (gain < FLAT),
                                 f"{gain:+.3f} over the last fifth of the run"))
    return checks


# What lessons 05-07 say about each level (they print the measured number beside it).
STEP_LIMITED = {"small": True, "medium": True, "large": True}
LESSON = {"small": "05", "medium": "06", "large": "07"}


def remedy_checks(remedies: Mapping | None) -> list[dict]:
    """Lesson 04's verdicts, from outputs/remedies.json: what it says each remedy does, held."""
    if not remedies:
        return [_check("lesson 04's remedies ran", False, "missing outputs/remedies.json (run lesson 04)")]
    rows = {r.get("remedy"): r for r in remedies.get("rows", []) if isinstance(r, dict)}
    checks = []
    for (name, column), said in REMEDY_VERDICTS.items():
        row = rows.get(name)
        what = "alone" if column == "verdict" else "with early stopping"
        measured = "alone" if column == "verdict" else "with_early_stopping"
        if row is None or measured not in row:  # not run, or written by an older course: rerun lesson 04
            checks.append(_check(f"remedies: {name} ({what}): {said}", False,
                                 "not in outputs/remedies.json: rerun lesson 04"))
            continue
        checks.append(_check(f"remedies: {name} ({what}): {said}", row.get(column) == said,
                             f"{row[measured]} ({row.get('seeds')} seeds)"))
    return checks


# What lesson 04 tells the student about each remedy; a different measurement fails the check.
REMEDY_VERDICTS = {("early stopping (no remedy, best step)", "verdict"): "helps",
                   ("more data (1,000 stories)", "verdict"): "helps",
                   ("dropout 0.2", "verdict"): "helps",
                   ("weight decay 0.1", "verdict"): "helps",
                   ("dropout 0.2", "verdict_with_early_stopping"): "within the noise",
                   ("weight decay 0.1", "verdict_with_early_stopping"): "helps"}


def sweep_checks(sweep: Mapping | None) -> list[dict]:
    """Lesson 08's controlled experiment: U-turns where data is small, none where it is large,
    seeds that agree, loss falling with data, a law that fits and predicts."""
    if not sweep:
        return [_check("lesson 08's controlled experiment ran", False, "missing outputs/data_sweep.json")]
    summary, fit, pred = sweep["summary"], sweep.get("fit") or {}, sweep.get("prediction")
    small = [s for s in summary if s["stories"] <= 200]
    large = [s for s in summary if s["stories"] >= 3000]
    spread = max(s["best_val_sd"] for s in summary)
    means = [s["best_val"] for s in summary]
    checks = [
        _check("sweep: every seed turns up at 100 and 200 stories", all(s["turned_up"] == s["seeds"] for s in small),
               ", ".join(f"{s['stories']}: {s['turned_up']}/{s['seeds']}" for s in small)),
        _check("sweep: no seed turns up at 3,000 stories and more", not any(s["turned_up"] for s in large),
               ", ".join(f"{s['stories']}: {s['turned_up']}/{s['seeds']}" for s in large)),
        _check(f"sweep: seeds agree (sd of best val at most {SWEEP_SPREAD}) at every size", spread <= SWEEP_SPREAD,
               f"largest sd {spread:.3f}"),
        _check(f"sweep: mean best val falls by more than the seeds' spread at every step up to {STEP_LIMIT:,} "
               f"stories, and beyond it moves less than twice the spread (the recipe's own limit)",
               all(_falls_or_flat(a, b) for a, b in zip(summary, summary[1:])),
               " > ".join(f"{m:.3f}" for m in means)),
        _check(f"sweep: the law fits (R² at least {LAW_R2} on log axes)", fit.get("r2", 0) >= LAW_R2,
               f"R² {fit.get('r2', float('nan')):.3f}"),
        _check(f"sweep: beta's spread over seeds at most {BETA_SPREAD:.0%} of beta",
               bool(fit) and fit.get("beta_sd") is not None and fit["beta_sd"] <= BETA_SPREAD * fit["beta"],
               f"beta {fit.get('beta', float('nan')):.3f} ± {fit.get('beta_sd') or float('nan'):.3f}"),
        _check(f"sweep: the law predicts a held-out size within {PREDICTION_ERROR} nats",
               pred is not None and abs(pred["error"]) <= PREDICTION_ERROR,
               f"{pred['stories']:,} stories: predicted {pred['predicted']:.3f}, measured {pred['measured']:.3f}"
               if pred else "no held-out runs"),
    ]
    return checks


SWEEP_SPREAD, LAW_R2, BETA_SPREAD, PREDICTION_ERROR = 0.1, 0.95, 0.2, 0.1
# From here up, 800 steps read each story fewer than four times: the steps, not the data, limit the
# loss (lesson 08 says so), so a bigger sweep point need not be lower, only within the noise.
STEP_LIMIT = 3000


def _falls_or_flat(smaller: Mapping, larger: Mapping) -> bool:
    noise = max(smaller["best_val_sd"], larger["best_val_sd"])
    if larger["stories"] <= STEP_LIMIT:
        return smaller["best_val"] - larger["best_val"] > noise
    return abs(smaller["best_val"] - larger["best_val"]) < 2 * noise


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


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_lesson(models_dir: Path | str | None = None, outputs_dir: Path | str | None = None) -> list[dict]:
    """Every check, from the levels' saved models and the lessons' result files; a missing one fails.

    The folders default to models/ and outputs/ (paths.models_dir() and paths.outputs_dir(), read now)."""
    models_dir = paths.models_dir(models_dir)
    histories, recitals, train_floors, checks, floor = {}, {}, {}, [], None
    for name, cfg in LEVELS.items():
        path = default_path(cfg, models_dir)
        if not path.is_file():
            checks.append(_check(f"{name}: trained model present", False, f"missing {path}"))
            continue
        model, info = load_model(path)
        histories[name] = info["history"]
        floors = info["data_stats"].get("floor", {})
        floor = floor or floors.get("val")
        if name in RISE:
            data = load_data(cfg)
            train_floors[name] = data.floor.get("train", floors.get("val"))
            recitals[name] = level_recital(name, model, info["vocab"], data)
    if floor is None:
        return checks
    outputs_dir = paths.outputs_dir(outputs_dir)
    return (checks + overfitting_checks(histories, floor, recitals, train_floors)
            + remedy_checks(_read_json(outputs_dir / "remedies.json"))
            + step_limited_checks(histories) + ladder_checks(histories, floor)
            + sweep_checks(_read_json(outputs_dir / "data_sweep.json")))


def format_checks(checks: list[dict]) -> str:
    held = sum(c["held"] == "held" for c in checks)
    return (format_table(checks, ["claim", "held", "measured"])
            + f"\n\n{held} of {len(checks)} held.")
