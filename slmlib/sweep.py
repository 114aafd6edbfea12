"""The controlled experiment: one fixed model and training recipe, only the data changes.

The ladder of levels grows the model, the data and the steps together, so it cannot say which
of them closed the gap. Here nothing changes but the number of training stories, and every
size is trained with three seeds, so the spread shows what is noise.

Because the course knows its entropy floor E exactly, the data scaling law
L(D) = E + A + B * D^-beta needs no guess at E: A is the recipe's own limit (at a fixed number
of steps even unlimited data leaves the loss above the floor) and B * D^-beta is what more data
removes, a straight line on log-log axes once A is taken off. A law earns the name by predicting
a size it was not fitted on: the sweep trains one held-out size and prints the error.

Every run is kept in outputs/runs/ under a key of its settings, data and training code, so a
run with the same settings (a lesson's remedy run, a class member's cell) is loaded, not
trained again. The class can share the work: `python -m slmlib sweep --cell K --of N` runs
one student's share, `python -m slmlib sweep --collect FOLDER` merges what they hand back.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .config import LEVELS, LevelConfig
from .errors import UsageError
from .paths import DATA_DIR, OUTPUTS_DIR, ROOT, atomic_write
from .workers import end_with_parent

SWEEP_STORIES = (100, 200, 500, 1000, 3000, 10000)
HELD_OUT_STORIES = 2000  # not in the fit: the law must predict it
SWEEP_SEEDS = (1, 2, 3)
# One fixed recipe for every data size, chosen by measurement (README, "The controlled
# experiment"): ultra-tiny's model (2 layers x 32 wide), 800 steps of 16 windows of 128 tokens,
# learning rate 1e-2 held constant after 100 warm-up steps. The long warm-up is what makes the
# seeds agree: with 30 warm-up steps one seed in three sat on a plateau for hundreds of steps
# (4.48 vs 2.95-3.16 at step 200), 0.3-0.5 nats behind at every size. The constant rate keeps
# memorising to the end, so 200 stories turn up (at 750 steps: best at step 450, +0.27-0.32 by
# the end; 800 steps keep the best well inside the first 60% of the run).
# Rejected: tiny's model (2x the time per step), a cosine decay (200 stories rose only 0.04-0.08).
SWEEP_CONFIG = LEVELS["ultra_tiny"].replace(name="sweep", max_iters=800, eval_interval=50, eval_windows=64,
                                            warmup_iters=100, lr_schedule="constant")
TURNED_UP = {"best_by": 0.6, "rise": 0.2}  # the lesson check's definition of a U-turn
RUNS_DIR = OUTPUTS_DIR / "runs"
# What a run's result depends on beyond its settings: the data and the training code.
_RUN_INPUTS = [DATA_DIR / "stats.json"] + [ROOT / "slmlib" / f for f in ("model.py", "train.py", "data.py",
                                                                           "config.py", "tokenizer.py")]


def sweep_config(stories: int, seed: int, base: LevelConfig = SWEEP_CONFIG) -> LevelConfig:
    return base.replace(stories=stories, seed=seed)


def run_key(cfg: LevelConfig) -> str:
    """Same settings, same data, same training code: the same run (bit for bit on one machine)."""
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for path in _RUN_INPUTS:
        h.update(path.read_bytes() if path.is_file() else b"-")
    return h.hexdigest()[:20]


def run_file(cfg: LevelConfig, runs_dir: Path) -> Path:
    """Where the run with these settings is kept in runs_dir (its name says its size, seed and key)."""
    return Path(runs_dir) / f"{cfg.name}-{cfg.stories}-seed{cfg.seed}-{run_key(cfg)}.json"


def load_run(cfg: LevelConfig, runs_dir: Path | str = RUNS_DIR) -> dict | None:
    """A finished run with exactly these settings, if one was kept; None otherwise."""
    path = run_file(cfg, runs_dir)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = run.get("key") == run_key(cfg) and run.get("status") == "completed" and run.get("records")
    return run if ok else None


def save_run(cfg: LevelConfig, run: dict, runs_dir: Path | str = RUNS_DIR) -> Path:
    path = run_file(cfg, runs_dir)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps({**run, "key": run_key(cfg)}) + "\n",
                                                        encoding="utf-8"))
    return path


def _run_one(cfg: LevelConfig, threads: int | None) -> dict:
    """Train one run without saving a model (in a worker process when jobs > 1): its history."""
    import torch

    from .data import load_data
    from .train import train

    if threads:
        torch.set_num_threads(threads)
    data = load_data(cfg)
    history = train(cfg, data=data, save=False, progress=False, device="cpu")
    if history.status != "completed":  # Ctrl-C, SIGTERM, or the parent gone: stop, not on to the next run
        raise KeyboardInterrupt(f"stopped during the run on {cfg.stories:,} stories, seed {cfg.seed}; "
                                "the finished runs are kept")
    return {**history.to_dict(), "train_tokens": int(data.train.numel()), "floor": data.floor.get("val")}


def _run_or_load(cfg: LevelConfig, threads: int | None, runs_dir: Path | str | None) -> dict:
    """One run, trained once however many processes ask for it.

    A lock per run key: a process that finds another one training this run (the course's
    background worker, a second notebook) waits for it and loads the result instead of training
    the same run twice. The run is kept as soon as it finishes.
    """
    if not runs_dir:
        return _run_one(cfg, threads)
    from filelock import FileLock

    path = run_file(cfg, Path(runs_dir))
    lock = path.parent / ".locks" / f"{path.stem}.lock"  # out of sight: a lock file outlives its lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        run = load_run(cfg, runs_dir)
        if run is None:
            run = _run_one(cfg, threads)  # a run stopped by a signal raises: only finished runs are kept
            save_run(cfg, run, runs_dir)
    return run


def train_many(configs: Sequence[LevelConfig], jobs: int = 2, progress: bool = True,
               desc: str = "runs", runs_dir: Path | str | None = RUNS_DIR, threads: int | None = None) -> list[dict]:
    """Train several small runs (no models saved) and return their histories as dicts, in order.

    A run already kept in runs_dir with the same settings is loaded instead of trained; each new
    run is kept there as soon as it finishes, so an interrupted sweep loses only the runs in
    flight. jobs: runs in parallel, one thread each (these models are too small to keep two
    threads busy, so two single-threaded runs side by side finish sooner than one after the other);
    threads: torch's threads when jobs is 1 (None: torch's default).
    """
    results: list[dict | None] = [load_run(c, runs_dir) if runs_dir else None for c in configs]
    todo = [i for i, r in enumerate(results) if r is None]
    bar = None
    if progress:
        from .lesson import shown_path
        from .progress import progress_bar

        reused = len(configs) - len(todo)
        if reused:  # say where they come from: this machine earlier, or a folder an instructor shipped with them
            print(f"{desc}: {reused} of {len(configs)} runs are already kept in {shown_path(runs_dir)}/ with the same "
                  "settings, data and training code, so they are loaded, not trained again", flush=True)
        bar = progress_bar(total=len(configs), initial=reused, unit="run",
                           desc=f"{desc} ({reused} reused)" if reused else desc)

    def finished(i: int, run: dict) -> None:
        results[i] = run
        if bar is not None:
            bar.update(1)

    if jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=get_context("spawn"),
                                 initializer=end_with_parent) as pool:
            done = pool.map(_run_or_load, [configs[i] for i in todo], [1] * len(todo), [runs_dir] * len(todo))
            for i, run in zip(todo, done):
                finished(i, run)
    else:
        for i in todo:
            finished(i, _run_or_load(configs[i], threads, runs_dir))
    if bar is not None:
        bar.close()
    return results


def sweep_row(run: dict) -> dict:
    """One run of the sweep as a table row: where it was best, how far it rose, its gaps."""
    cfg, records = run["config"], run["records"]
    best = min(records, key=lambda r: r["val_loss"])
    last = records[-1]
    tokens_seen = cfg["max_iters"] * cfg["batch_size"] * cfg["block_size"]
    return {"stories": cfg["stories"], "seed": cfg["seed"], "train_tokens": run["train_tokens"],
            "passes": round(tokens_seen / run["train_tokens"], 1),
            "best_val": best["val_loss"], "best_step": best["iter"], "steps": last["iter"],
            "rise": round(last["val_loss"] - best["val_loss"], 3), "final_train": last["train_loss"],
            "gap_at_best": round(best["val_loss"] - best["train_loss"], 3),
            "gap_at_end": round(last["val_loss"] - last["train_loss"], 3),
            "floor": run["floor"], "seconds": round(run["seconds"], 1)}


def turned_up(row: dict) -> bool:
    """The U-turn: best validation early in the run, then a clear rise."""
    return row["best_step"] <= TURNED_UP["best_by"] * row["steps"] and row["rise"] >= TURNED_UP["rise"]


def mean_sd(values: Sequence[float], digits: int | None = 3) -> tuple[float, float]:
    """Mean and standard deviation over seeds (0 for one seed), rounded to `digits` (None: not rounded)."""
    mean, sd = statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
    return (mean, sd) if digits is None else (round(mean, digits), round(sd, digits))


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per story count: mean and spread (sd over seeds) of each number, and how many turned up."""
    out = []
    for n in sorted({r["stories"] for r in rows}):
        group = [r for r in rows if r["stories"] == n]
        entry = {"stories": n, "seeds": len(group), "train_tokens": group[0]["train_tokens"],
                 "passes": group[0]["passes"], "turned_up": sum(turned_up(r) for r in group)}
        for key in ("best_val", "best_step", "rise", "final_train", "gap_at_best", "gap_at_end"):
            entry[key], entry[f"{key}_sd"] = mean_sd([r[key] for r in group])
        entry["best_step"] = round(entry["best_step"])  # a step, even as a mean
        out.append(entry)
    return out


def _line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x -> (a, b, R^2)."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (1 - residual / total) if total > 0 else 1.0


def _law_fit(points: Sequence[tuple[float, float]]) -> dict | None:
    """Fit y = A + B * D^-beta to (D, y) points, y being the loss above the floor.

    For a given A the law is a straight line on log-log axes of (y - A) against D; A (the
    recipe's own limit, >= 0) is the one that brings the curve closest to the points on a log
    scale, found on a fine grid (no optimiser needed for one number). R^2 is measured on log(y):
    1 means the curve goes through every point.
    """
    pts = [(d, y) for d, y in points if y > 0]
    if len(pts) < 3:
        return None
    low = min(y for _, y in pts)
    best = None
    for a in (low * k / 400 for k in range(400)):
        log_b, slope, _ = _line_fit([math.log(d) for d, _ in pts], [math.log(y - a) for _, y in pts])
        fitted = [math.log(a + math.exp(log_b) * d ** slope) for d, _ in pts]
        sse = sum((math.log(y) - f) ** 2 for (_, y), f in zip(pts, fitted))
        if best is None or sse < best[0]:
            best = (sse, a, log_b, slope)
    sse, a, log_b, slope = best
    logs = [math.log(y) for _, y in pts]
    total = sum((v - statistics.mean(logs)) ** 2 for v in logs)
    return {"A": round(a, 4), "B": round(math.exp(log_b), 4), "beta": round(-slope, 4),
            "r2": round(1 - sse / total, 4) if total > 0 else 1.0}


def fit_scaling_law(rows: Sequence[dict], floor: float) -> dict:
    """Fit best_val - floor = A + B * D^-beta: on the seed means, and per seed.

    The floor is the generator's entropy, known exactly. A is what this recipe cannot get below
    however much data it has: at a fixed number of steps the largest sizes are limited by the
    steps and the model's size, not by the data (Chinchilla's law has the same constant term).
    B * D^-beta is what more data removes. R^2 is the fit's on log axes (1 = every point on the
    curve). beta_sd is the spread of beta over the seeds' own fits: how much beta would move with
    other seeds.
    """
    means = _law_fit([(s["stories"], s["best_val"] - floor) for s in summarise(rows)])
    if means is None:
        return {}
    per_seed = [dict(seed=seed, **f) for seed in sorted({r["seed"] for r in rows})
                if (f := _law_fit([(r["stories"], r["best_val"] - floor) for r in rows if r["seed"] == seed]))]
    betas = [p["beta"] for p in per_seed]
    return {**means, "beta_sd": round(statistics.stdev(betas), 4) if len(betas) > 1 else None,
            "per_seed": per_seed, "fitted_on": sorted({r["stories"] for r in rows}), "floor": floor}


def predict(fit: dict, stories: int) -> float:
    """The law's best validation loss at a data size: floor + A + B * D^-beta."""
    return fit["floor"] + fit.get("A", 0.0) + fit["B"] * stories ** -fit["beta"]


def sweep_result(rows: Sequence[dict], held_out_rows: Sequence[dict], config: dict) -> dict:
    """Table, fit and the held-out prediction from the runs' rows (the class's, or one machine's)."""
    floor = rows[0]["floor"]
    fit = fit_scaling_law(rows, floor)
    result = {"config": config, "rows": list(rows), "summary": summarise(rows), "fit": fit, "floor": floor,
              "held_out_rows": list(held_out_rows)}
    if fit and held_out_rows:
        stories = held_out_rows[0]["stories"]
        measured, sd = mean_sd([r["best_val"] for r in held_out_rows])
        predicted = round(predict(fit, stories), 3)
        result["prediction"] = {"stories": stories, "predicted": predicted, "measured": measured,
                                "measured_sd": sd, "seeds": len(held_out_rows),
                                "error": round(measured - predicted, 3)}
    return result


def sweep_configs(stories: Sequence[int] = SWEEP_STORIES, seeds: Sequence[int] = SWEEP_SEEDS,
                  base: LevelConfig = SWEEP_CONFIG, held_out: int | None = HELD_OUT_STORIES) -> list[LevelConfig]:
    """Every run of the sweep: each story count with each seed, then the held-out size."""
    sizes = list(stories) + ([held_out] if held_out else [])
    return [sweep_config(n, s, base) for n in sizes for s in seeds]


def data_sweep(stories: Sequence[int] = SWEEP_STORIES, seeds: Sequence[int] = SWEEP_SEEDS,
               base: LevelConfig = SWEEP_CONFIG, held_out: int | None = HELD_OUT_STORIES, jobs: int = 2,
               progress: bool = True, out_dir: str | Path | None = OUTPUTS_DIR,
               runs_dir: str | Path | None = RUNS_DIR) -> dict:
    """Train the fixed recipe on each story count with each seed, fit the law, test it on `held_out`.

    Writes outputs/data_sweep.json and outputs/data_sweep.png when out_dir is given.
    """
    configs = sweep_configs(stories, seeds, base, held_out)
    rows = [sweep_row(run) for run in train_many(configs, jobs, progress, "data sweep", runs_dir)]
    fitted = [r for r in rows if r["stories"] != held_out]
    result = sweep_result(fitted, [r for r in rows if r["stories"] == held_out], base.to_dict())
    if out_dir is not None:
        write_sweep(result, Path(out_dir) / "data_sweep")
    return result


def write_sweep(result: dict, stem: Path) -> None:
    """<stem>.json and <stem>.png."""
    from .plots import close_figure, plot_sweep

    atomic_write(stem.with_suffix(".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8"))
    close_figure(plot_sweep(result, stem.with_suffix(".png")))


def fit_line(result: dict) -> str:
    """The law and its test in two lines."""
    fit, pred = result.get("fit") or {}, result.get("prediction")
    if not fit:
        return "no fit: fewer than 3 data sizes with a best validation loss above the floor"
    spread = f" ± {fit['beta_sd']:.3f} (sd over {len(fit['per_seed'])} seeds)" if fit.get("beta_sd") is not None else ""
    line = (f"fit on the means: best val - floor = {fit.get('A', 0):.3f} + {fit['B']:.2f} · D^-{fit['beta']:.3f}; "
            f"beta {fit['beta']:.3f}{spread}; R² {fit['r2']:.3f} on log-log axes")
    if pred:
        line += (f"\nheld out, {pred['stories']:,} stories (not in the fit): predicted {pred['predicted']:.3f}, "
                 f"measured {pred['measured']:.3f} ± {pred['measured_sd']:.3f} ({pred['seeds']} seeds): "
                 f"error {pred['error']:+.3f} nats")
    return line


SWEEP_COLUMNS = ("stories", "train_tokens", "passes", "best_val", "best_val_sd", "best_step", "rise",
                 "final_train", "gap_at_best", "gap_at_end", "turned_up")


# The class as the cluster: every (stories, seed) pair is a cell one student can run.
def sweep_cells(seeds: Sequence[int] = SWEEP_SEEDS, stories: Sequence[int] = SWEEP_STORIES,
                held_out: int | None = HELD_OUT_STORIES) -> list[tuple[int, int]]:
    return [(n, s) for s in seeds for n in list(stories) + ([held_out] if held_out else [])]


def run_cells(cell: int, of: int, out_dir: str | Path, seeds: Sequence[int] = SWEEP_SEEDS,
              base: LevelConfig = SWEEP_CONFIG, jobs: int = 1, progress: bool = True) -> list[Path]:
    """Student `cell` of `of` (0-based) runs its share of the cells; writes one small JSON per run.

    The files are what the student hands back: `python -m slmlib sweep --collect FOLDER` merges them.
    """
    if not (isinstance(cell, int) and isinstance(of, int) and of >= 1 and 0 <= cell < of):
        raise UsageError(f"--cell {cell} --of {of}: the cell must be a whole number from 0 to {of - 1}, "
                         "e.g. --cell 0 --of 30 for the first of 30 students")
    cells = sweep_cells(seeds)
    mine = cells[cell::of]
    if not mine:
        raise UsageError(f"cell {cell} of {of}: the sweep has only {len(cells)} cells ({len(seeds)} seeds), "
                         f"so cells {len(cells)} and up have nothing to run; use --of {len(cells)} or "
                         "more seeds (--seeds 1-6)")
    configs = [sweep_config(n, s, base) for n, s in mine]
    out_dir = Path(out_dir)
    paths = []
    for cfg, run in zip(configs, train_many(configs, jobs, progress, f"cell {cell} of {of}")):
        path = out_dir / f"sweep-{cfg.stories}-stories-seed{cfg.seed}.json"
        atomic_write(path, lambda tmp, run=run: Path(tmp).write_text(
            json.dumps({"sweep_cell": True, **run}) + "\n", encoding="utf-8"))
        paths.append(path)
    return paths


def _recipe(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("stories", "seed")}


def collect(folder: str | Path, base: LevelConfig = SWEEP_CONFIG, held_out: int | None = HELD_OUT_STORIES,
            stories: Sequence[int] = SWEEP_STORIES) -> tuple[dict | None, list[str]]:
    """Merge the cells a class handed back: (the sweep's result, or None; the problems found).

    Nothing is averaged silently: a file that is not a finished sweep run, a run with other
    settings, and a second copy of a cell are each reported and left out; the cells missing from
    the seeds handed in are listed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--collect {folder}: no such folder; give the folder the class's JSON files are in")
    recipe, problems, runs = _recipe(base.to_dict()), [], {}
    for path in sorted(folder.rglob("*.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
            cfg = run["config"]
            cell = (int(cfg["stories"]), int(cfg["seed"]))
            sweep_row(run)  # every number the table needs is there
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            problems.append(f"{path.name}: not a sweep result (unreadable or incomplete), left out")
            continue
        if run.get("status") != "completed":
            problems.append(f"{path.name}: the run did not finish ({run.get('status')}), left out")
        elif _recipe(cfg) != recipe:
            changed = sorted(k for k in set(recipe) | set(cfg) if recipe.get(k) != cfg.get(k)
                             and k not in ("stories", "seed"))
            problems.append(f"{path.name}: trained with other settings ({', '.join(changed)}), left out")
        elif cell in runs:
            same = runs[cell][1]["records"] == run["records"]
            problems.append(f"{path.name}: a second copy of {cell[0]} stories, seed {cell[1]} "
                            f"({'identical' if same else 'DIFFERENT numbers'}; {runs[cell][0]} is used)")
        else:
            runs[cell] = (path.name, run)
    seeds = sorted({s for _, s in runs})
    missing = [c for c in sweep_cells(seeds, stories, held_out) if c not in runs]
    if missing:
        problems.append(f"missing cells ({len(missing)}): "
                        + ", ".join(f"{n} stories seed {s}" for n, s in missing[:20])
                        + (" ..." if len(missing) > 20 else ""))
    rows = [sweep_row(run) for _, run in runs.values()]
    fitted = [r for r in rows if r["stories"] != held_out]
    if not fitted:
        return None, problems + ["no usable runs: nothing to fit"]
    return sweep_result(fitted, [r for r in rows if r["stories"] == held_out], base.to_dict()), problems
