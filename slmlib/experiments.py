"""The course's experiments: train the ladder of five levels, then test on new data."""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import CheckpointError, default_path, load_model, model_path
from .config import LEVELS, LevelConfig, get_level
from .data import eval_windows, floor_nats_per_token, fresh_stories, load_data, to_token_tensor, write_atomic
from .generation import generate_text
from .metrics import TrainingText, chance_copying, perplexity, reference_losses, text_quality
from .paths import MODELS_DIR, OUTPUTS_DIR
from .plots import close_figure, plot_gap_vs_data, plot_ladder_curves
from .surprise import score_handwritten
from .tables import format_table
from .history import History
from .distributed import is_main_process
from .sweep import mean_sd
from .train import evaluate_loss, train

DEFAULT_PROMPTS = ("Once upon a time", "One day, a little girl named", "The dog was sad because")
FRESH_SEED = 2026


def resolve_levels(levels: str | int | Sequence = "all") -> list[LevelConfig]:
    """'all', a name, a number, 'tiny,small', or a list of any of those."""
    if levels == "all":
        return list(LEVELS.values())
    if isinstance(levels, str):
        levels = [p for p in levels.split(",") if p.strip()]
    elif not isinstance(levels, Sequence):
        levels = [levels]
    return [get_level(level) for level in levels]


def level_result(history: History, model, data_stats: dict, refs: dict | None = None) -> dict:
    """One row of the ladder table; refs: the level's reference losses (metrics.reference_losses)."""
    cfg = history.config
    floor = data_stats.get("floor", {}).get("val")
    params = model.num_params()
    final, best = history.final, history.best
    tokens_seen = cfg["max_iters"] * cfg["batch_size"] * cfg["block_size"]
    return {
        "level": cfg["name"], "stories": cfg["stories"], "train_tokens": data_stats["train_tokens"],
        "params": params, "non_embedding_params": model.num_params(non_embedding=True),
        "tokens_per_param": round(data_stats["train_tokens"] / params, 3),
        "max_iters": cfg["max_iters"], "batch_size": cfg["batch_size"], "lr": cfg["lr"],
        "tokens_seen": tokens_seen, "passes": round(tokens_seen / data_stats["train_tokens"], 1),
        "train_loss": final["train_loss"], "val_loss": final["val_loss"], "gap": final["gap"],
        "best_val": best.get("val_loss"), "best_step": best.get("iter"),
        "floor": floor, "val_above_floor": round(final["val_loss"] - floor, 4) if floor is not None else None,
        "bigram": (refs or {}).get("bigram"), "refs": refs,
        "seconds": round(history.seconds, 1), "status": history.status,
    }


def level_refs(cfg: LevelConfig | dict, data=None) -> dict:
    """The reference losses of a level's own stories, on the windows its curves were measured on."""
    cfg = LevelConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    return reference_losses(data if data is not None else load_data(cfg), cfg.eval_windows, cfg.block_size)


def train_ladder(levels: str | Sequence = "all", models_dir: str | Path = MODELS_DIR,
                 out_dir: str | Path = OUTPUTS_DIR, progress: bool = True, callbacks=(),
                 device: str = "auto", overwrite: bool = False, **overrides) -> list[dict]:
    """Train each level, save each model, and write the curves and the results table.

    overrides (e.g. max_iters=50) apply to every level: handy for a quick try. Such runs are
    saved under models/experiments/; overwrite=True saves them as the levels' own models
    instead (the replaced ones are kept as .previous.pt).
    Writes outputs/training_curves.png, outputs/gap_vs_data.png, outputs/ladder_results.json.
    """
    out_dir = Path(out_dir)
    results, histories = [], {}
    start = time.perf_counter()
    for cfg in resolve_levels(levels):
        cfg = cfg.replace(**overrides) if overrides else cfg
        out = default_path(cfg, models_dir) if overwrite else model_path(cfg, models_dir)
        history = train(cfg, out=out, progress=progress, callbacks=callbacks, device=device,
                        overwrite=overwrite)
        if history.status != "completed":  # interrupted: keep what we have, say so, stop
            break
        histories[cfg.name] = history
        results.append(level_result(history, history.model, history.data.stats(), level_refs(cfg, history.data)))
    if results and is_main_process():  # under torchrun, rank 0 alone writes
        write_ladder_outputs(histories, results, out_dir, total_seconds=time.perf_counter() - start,
                             overrides=overrides)
    return results


def write_ladder_outputs(histories: dict, results: list[dict], out_dir: str | Path = OUTPUTS_DIR,
                         **extra) -> None:
    """outputs/training_curves.png, gap_vs_data.png and ladder_results.json."""
    out_dir = Path(out_dir)
    refs = {r["level"]: r["refs"] for r in results if r.get("refs")}
    for fig in (plot_ladder_curves(histories, results[0]["floor"], out_dir / "training_curves.png", refs),
                plot_gap_vs_data(results, out_dir / "gap_vs_data.png")):
        close_figure(fig)  # saved to disk; a notebook shows them where it asks for them
    write_atomic(out_dir / "ladder_results.json", json.dumps({"levels": results, **extra}, indent=2) + "\n")


def ladder_from_models(levels: str | Sequence = "all", models_dir: str | Path = MODELS_DIR,
                       out_dir: str | Path | None = OUTPUTS_DIR,
                       settings: dict | None = None) -> tuple[dict, list[dict]]:
    """Histories and result rows of the saved models (no training); writes the outputs too.

    settings: changes every level was trained with (the lessons' smoke settings), which picks
    those runs from models/experiments/; by default the levels' own models.
    """
    histories, results = {}, []
    for cfg in resolve_levels(levels):
        hint = (f"Train it first: run lesson 0{cfg.number + 2}_{cfg.name}.ipynb, "
                f"or `python -m slmlib train --level {cfg.name}`.")
        model, info = load_model(model_path(cfg.replace(**(settings or {})), models_dir), train_hint=hint)
        histories[cfg.name] = info["history"]
        results.append(level_result(info["history"], model, info["data_stats"], level_refs(info["config"])))
    if out_dir is not None and results:
        write_ladder_outputs(histories, results, out_dir, source="saved models")
    return histories, results


LADDER_COLUMNS = ("level", "stories", "train_tokens", "params", "max_iters", "batch_size", "passes",
                  "train_loss", "val_loss", "gap", "best_val", "best_step", "bigram", "floor", "seconds")


def test_models(levels: str | Sequence = "all", models_dir: str | Path = MODELS_DIR,
                out_dir: str | Path = OUTPUTS_DIR, prompts: Sequence[str] = DEFAULT_PROMPTS,
                n_fresh: int = 200, max_new_tokens: int = 80, seed: int = 0,
                settings: dict | None = None) -> list[dict]:
    """Evaluate every saved model on held-out and brand-new stories; sample some text.

    Writes outputs/test_results_new_data.json and outputs/test_results.md.
    """
    fresh = fresh_stories(n_fresh, FRESH_SEED)
    fresh_floor = floor_nats_per_token(fresh)
    rows = []
    for cfg in resolve_levels(levels):
        path = model_path(cfg.replace(**(settings or {})), models_dir)
        if not path.is_file():
            continue
        model, info = load_model(path)
        config, vocab = info["config"], info["vocab"]
        data = load_data(config)
        windows = max(256, config.eval_windows)
        test_loss = evaluate_loss(model, eval_windows(data.test, windows, config.block_size))
        fresh_tokens = to_token_tensor([s.text for s in fresh], vocab)
        fresh_loss = evaluate_loss(model, eval_windows(fresh_tokens, windows, config.block_size))
        training = TrainingText(data.train_texts)
        chance = chance_copying(training)
        samples = {p: generate_text(model, vocab, p, max_new_tokens, seed=seed) for p in prompts}
        handwritten = score_handwritten(model, vocab)  # stories a person wrote: beyond the generator's world
        final = info["history"].final
        rows.append({
            "level": config.name, "stories": config.stories, "params": model.num_params(),
            "train_loss": final.get("train_loss"), "val_loss": final.get("val_loss"),
            "test_loss": round(test_loss, 4), "new_stories_loss": round(fresh_loss, 4),
            "new_stories_perplexity": round(perplexity(fresh_loss), 2),
            "test_floor": data.floor.get("test"), "new_stories_floor": round(fresh_floor, 4),
            "above_floor": round(fresh_loss - fresh_floor, 4),
            "handwritten_loss": round(handwritten["loss"], 4),
            "handwritten_unknown_share": round(handwritten["unknown_share"], 4),
            **text_quality(list(samples.values()), training),
            "chance_8gram_share": chance["copied_8gram_share"],
            "samples": samples,
        })
    if not rows:
        raise CheckpointError(f"no trained models in {models_dir}. Train them first: "
                              "`python -m slmlib train --level all` (or run lessons 03-07).")
    out_dir = Path(out_dir)
    write_atomic(out_dir / "test_results_new_data.json",
                 json.dumps({"fresh_stories": n_fresh, "fresh_seed": FRESH_SEED, "models": rows}, indent=2) + "\n")
    write_atomic(out_dir / "test_results.md", format_table(rows, TEST_COLUMNS) + "\n")
    return rows


# Lesson 08 shows the test in two tables (the losses, then the samples' text); the file has both.
TEST_LOSS_COLUMNS = ("level", "stories", "val_loss", "test_loss", "new_stories_loss", "new_stories_floor",
                     "above_floor", "handwritten_loss", "handwritten_unknown_share")
TEST_TEXT_COLUMNS = ("level", "longest_copied_words", "copied_8gram_share", "chance_8gram_share", "distinct_2",
                     "real_word_share")
TEST_COLUMNS = ("level", "stories", "train_loss", *TEST_LOSS_COLUMNS[2:], *TEST_TEXT_COLUMNS[1:])


# The remedies for overfitting, each alone, on tiny's 200 stories with the controlled experiment's
# fast recipe (sweep.SWEEP_CONFIG), so that every remedy gets three seeds: a difference is only
# called an effect when it is larger than the seeds' own spread.
REMEDY_STORIES = 200
REMEDIES = {"no remedy": {}, "dropout 0.2": {"dropout": 0.2}, "weight decay 0.1": {"weight_decay": 0.1},
            "more data (1,000 stories)": {"stories": 1000}}
SWEEP_REMEDIES = ("no remedy", "more data (1,000 stories)")  # points of lesson 08's sweep


def remedy_plan(stories: int = REMEDY_STORIES, remedies: dict = REMEDIES, seeds: Sequence[int] | None = None,
                base: LevelConfig | None = None) -> list[tuple[str, LevelConfig]]:
    """(remedy, run settings) for every run try_remedies needs, in order."""
    from .sweep import SWEEP_CONFIG, SWEEP_SEEDS

    base = base or SWEEP_CONFIG
    # The runs without a remedy and with more data are sweep points (3 seeds, reused by lesson 08);
    # dropout and weight decay are runs of their own, so they get two seeds to save time.
    seeds_of = {name: list(seeds or (SWEEP_SEEDS if name in SWEEP_REMEDIES else SWEEP_SEEDS[:2])) for name in remedies}
    return [(name, base.replace(**{"stories": stories, "seed": seed, **change}))
            for name, change in remedies.items() for seed in seeds_of[name]]


def try_remedies(stories: int = REMEDY_STORIES, remedies: dict = REMEDIES, seeds: Sequence[int] | None = None,
                 base: LevelConfig | None = None, jobs: int = 2, progress: bool = True,
                 runs_dir=None) -> tuple[list[dict], dict[str, list[History]]]:
    """Each remedy alone, on the same stories, model and budget, with several seeds.

    Returns the table rows (means, spreads, the difference from no remedy and whether it is larger
    than the noise) and each remedy's histories (one per seed, for the curves). The runs without a
    remedy and with more data are points of lesson 08's sweep: kept in outputs/runs/ and reused there.
    Early stopping needs no run of its own: it is the no-remedy runs' best point. seeds: the same
    seeds for every remedy (by default 3 for the sweep's points, 2 for dropout and weight decay).
    """
    from .sweep import RUNS_DIR, train_many

    plan = remedy_plan(stories, remedies, seeds, base)
    runs = train_many([cfg for _, cfg in plan], jobs, progress, desc="remedies", runs_dir=runs_dir or RUNS_DIR)
    histories = {name: [History.from_dict(run) for (n, _), run in zip(plan, runs) if n == name] for name in remedies}
    baseline = histories[next(iter(remedies))]
    rows = [_remedy_row(name, hs, baseline) for name, hs in histories.items()]
    # Early stopping: the no-remedy runs, judged at their best step instead of their last.
    rows.insert(1, _remedy_row("early stopping (no remedy, best step)", baseline, baseline, at_best=True))
    return rows, histories


def judge(diffs: Sequence[float], noise: float) -> str:
    """An effect is one only when it beats the seeds' own noise: the mean difference (seed by seed)
    is larger than the no-remedy runs' spread over seeds, and every seed moves the same way."""
    mean = statistics.mean(diffs)
    if abs(mean) <= noise or not (all(d < 0 for d in diffs) or all(d > 0 for d in diffs)):
        return "within the noise"
    return "helps" if mean < 0 else "hurts"


def _remedy_row(name: str, runs: Sequence[History], baseline: Sequence[History], at_best: bool = False) -> dict:
    """Means over seeds, and each remedy against no remedy seed by seed (same seed: same start).

    Two questions: the remedy alone (the model it leaves at the end, against no remedy's final
    model), and the remedy on top of early stopping (best against best). Early stopping's own row
    is the no-remedy runs judged at their best step.
    """
    base_by_seed = {h.config["seed"]: h for h in baseline}
    pairs = [(h, base_by_seed[h.config["seed"]]) for h in runs if h.config["seed"] in base_by_seed]
    end = (lambda h: h.best) if at_best else (lambda h: h.final)
    val, val_sd = mean_sd([end(h)["val_loss"] for h in runs], digits=None)
    best, best_sd = mean_sd([h.best["val_loss"] for h in runs], digits=None)
    final_noise = mean_sd([h.final["val_loss"] for h in baseline], digits=None)[1]
    best_noise = mean_sd([h.best["val_loss"] for h in baseline], digits=None)[1]
    alone = [end(h)["val_loss"] - b.final["val_loss"] for h, b in pairs]
    on_top = [h.best["val_loss"] - b.best["val_loss"] for h, b in pairs]
    is_baseline = runs is baseline and not at_best
    return {"remedy": name, "seeds": len(runs),
            "val_loss": f"{val:.3f} ± {val_sd:.3f}",
            "alone": "" if is_baseline else f"{statistics.mean(alone):+.3f}: {judge(alone, final_noise)}",
            "best_val": f"{best:.3f} ± {best_sd:.3f}",
            "with_early_stopping": "" if is_baseline or at_best else
            f"{statistics.mean(on_top):+.3f}: {judge(on_top, best_noise)}",
            "train_loss": round(statistics.mean(end(h)["train_loss"] for h in runs), 3),
            "best_step": round(statistics.mean(h.best["iter"] for h in runs)),
            "verdict": "" if is_baseline else judge(alone, final_noise),
            "verdict_with_early_stopping": "" if is_baseline or at_best else judge(on_top, best_noise)}


REMEDY_COLUMNS = ("remedy", "seeds", "val_loss", "alone", "best_val", "with_early_stopping", "train_loss", "best_step")


def write_remedies(rows: list[dict], config: LevelConfig, out_dir: str | Path = OUTPUTS_DIR) -> Path:
    """outputs/remedies.json: lesson 04's table, which the lesson check reads."""
    path = Path(out_dir) / "remedies.json"
    write_atomic(path, json.dumps({"config": config.to_dict(), "rows": rows}, indent=2) + "\n")
    return path
