"""The controlled experiment: one fixed model and training budget, only the data changes.

The ladder of levels grows the model and the data together, so it cannot say which of the two
made the gap close. Here nothing changes but the number of training stories, and every point
is trained with three seeds, so the spread shows what is noise.

Because the course knows its entropy floor E exactly, the data scaling law
L(D) = E + B * D^-beta needs only B and beta: a straight line on log-log axes of
(best validation loss - E) against the number of stories D.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .config import LEVELS, LevelConfig
from .paths import OUTPUTS_DIR, atomic_write

SWEEP_STORIES = (100, 300, 1000, 3000, 10000)
SWEEP_SEEDS = (1, 2, 3)
# ultra_tiny's architecture and a budget small enough for 15 runs in about two minutes.
SWEEP_CONFIG = LEVELS["ultra_tiny"].replace(name="sweep", max_iters=250, eval_interval=25,
                                            eval_windows=64, warmup_iters=20)


def sweep_config(stories: int, seed: int, base: LevelConfig = SWEEP_CONFIG) -> LevelConfig:
    return base.replace(stories=stories, seed=seed)


def _run_one(cfg: LevelConfig, threads: int | None) -> dict:
    """Train one run without saving it (in a worker process when jobs > 1): its history."""
    import torch

    from .data import load_data
    from .train import train

    if threads:
        torch.set_num_threads(threads)
    data = load_data(cfg)
    history = train(cfg, data=data, save=False, progress=False, device="cpu")
    return {**history.to_dict(), "train_tokens": int(data.train.numel()), "floor": data.floor.get("val")}


def train_many(configs: Sequence[LevelConfig], jobs: int = 2, progress: bool = True,
               desc: str = "runs") -> list[dict]:
    """Train several small runs (not saved) and return their histories as dicts, in order.

    jobs: runs in parallel, one thread each. These models are too small to keep two threads
    busy, so two single-threaded runs side by side finish sooner than one after the other.
    """
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), desc=desc, unit="run")
    results = []
    if jobs > 1 and len(configs) > 1:
        with ProcessPoolExecutor(min(jobs, len(configs)), mp_context=get_context("spawn")) as pool:
            for result in pool.map(_run_one, configs, [1] * len(configs)):
                results.append(result)
                bar is not None and bar.update(1)
    else:
        for cfg in configs:
            results.append(_run_one(cfg, None))
            bar is not None and bar.update(1)
    if bar is not None:
        bar.close()
    return results


def _sweep_row(run: dict) -> dict:
    cfg = run["config"]
    tokens_seen = cfg["max_iters"] * cfg["batch_size"] * cfg["block_size"]
    return {"stories": cfg["stories"], "seed": cfg["seed"], "train_tokens": run["train_tokens"],
            "passes": round(tokens_seen / run["train_tokens"], 2),
            "best_val": run["best"]["val_loss"], "best_step": run["best"]["iter"],
            "final_val": run["final"]["val_loss"], "final_train": run["final"]["train_loss"],
            "gap": run["final"]["gap"], "floor": run["floor"], "seconds": round(run["seconds"], 1)}


def data_sweep(stories: Sequence[int] = SWEEP_STORIES, seeds: Sequence[int] = SWEEP_SEEDS,
               base: LevelConfig = SWEEP_CONFIG, jobs: int = 2, progress: bool = True,
               out_dir: str | Path | None = OUTPUTS_DIR) -> dict:
    """Train the fixed model on each story count with each seed; fit the scaling law.

    Writes outputs/data_sweep.json and outputs/data_sweep.png when out_dir is given.
    """
    configs = [sweep_config(n, s, base) for n in stories for s in seeds]
    rows = [_sweep_row(run) for run in train_many(configs, jobs, progress, desc="data sweep")]
    floor = rows[0]["floor"]
    result = {"config": base.to_dict(), "rows": rows, "summary": summarise(rows),
              "fit": fit_scaling_law(rows, floor), "floor": floor}
    if out_dir is not None:
        from .plots import close_figure, plot_sweep

        atomic_write(Path(out_dir) / "data_sweep.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
        close_figure(plot_sweep(result, Path(out_dir) / "data_sweep.png"))
    return result


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean and spread (standard deviation over seeds) per story count."""
    out = []
    for n in sorted({r["stories"] for r in rows}):
        group = [r for r in rows if r["stories"] == n]
        entry = {"stories": n, "seeds": len(group), "passes": group[0]["passes"]}
        for key in ("gap", "best_val", "final_val"):
            values = [r[key] for r in group]
            entry[key] = round(statistics.mean(values), 3)
            entry[f"{key}_sd"] = round(statistics.stdev(values), 3) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def _line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares y = a + b x -> (a, b)."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def fit_scaling_law(rows: Sequence[dict], floor: float, target: float = 0.1) -> dict:
    """Fit best_val = floor + B * stories^-beta, once per seed; beta's spread is over seeds.

    Also extrapolates: how many stories this model would need to come within `target` nats
    of the floor, if the line kept going (it need not: a fixed model and budget run out).
    """
    per_seed = []
    for seed in sorted({r["seed"] for r in rows}):
        pts = [(math.log(r["stories"]), math.log(r["best_val"] - floor))
               for r in rows if r["seed"] == seed and r["best_val"] > floor]
        if len(pts) >= 2:
            log_b, slope = _line_fit(*zip(*pts))
            per_seed.append({"seed": seed, "B": math.exp(log_b), "beta": -slope})
    if not per_seed:
        return {}
    betas = [p["beta"] for p in per_seed]
    beta = statistics.mean(betas)
    B = math.exp(statistics.mean(math.log(p["B"]) for p in per_seed))
    try:  # a nearly flat line extrapolates to astronomically many stories
        needed = math.exp(math.log(B / target) / beta) if beta > 0 and B > target else float("inf")
    except OverflowError:
        needed = float("inf")
    return {"beta": round(beta, 3), "beta_sd": round(statistics.stdev(betas), 3) if len(betas) > 1 else 0.0,
            "B": round(B, 3), "per_seed": per_seed, "target_above_floor": target,
            "stories_for_target": round(needed) if math.isfinite(needed) and needed < 1e15 else None}
