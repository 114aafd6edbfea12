"""The course's experiments: train the ladder of five levels, then test on new data."""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import CheckpointError, default_path, load_model, model_path
from .config import LEVELS, LevelConfig, get_level
from .data import eval_windows, floor_nats_per_token, fresh_stories, load_data, to_token_tensor, write_atomic
from .generation import generate_text
from .metrics import TrainingText, chance_copying, perplexity, text_quality
from .paths import MODELS_DIR, OUTPUTS_DIR
from .plots import close_figure, plot_gap_vs_data, plot_ladder_curves
from .surprise import score_handwritten
from .tables import format_table  # noqa: F401  (lessons import it from here too)
from .history import History
from .distributed import is_main_process
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


def level_result(history: History, model, data_stats: dict) -> dict:
    """One row of the ladder table."""
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
        "seconds": round(history.seconds, 1), "status": history.status,
    }


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
        results.append(level_result(history, history.model, history.data.stats()))
    if results and is_main_process():  # under torchrun, rank 0 alone writes
        write_ladder_outputs(histories, results, out_dir, total_seconds=time.perf_counter() - start,
                             overrides=overrides)
    return results


def write_ladder_outputs(histories: dict, results: list[dict], out_dir: str | Path = OUTPUTS_DIR,
                         **extra) -> None:
    """outputs/training_curves.png, gap_vs_data.png and ladder_results.json."""
    out_dir = Path(out_dir)
    for fig in (plot_ladder_curves(histories, results[0]["floor"], out_dir / "training_curves.png"),
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
        results.append(level_result(info["history"], model, info["data_stats"]))
    if out_dir is not None and results:
        write_ladder_outputs(histories, results, out_dir, source="saved models")
    return histories, results


LADDER_COLUMNS = ("level", "stories", "train_tokens", "params", "max_iters", "batch_size", "passes",
                  "train_loss", "val_loss", "gap", "best_val", "best_step", "floor", "seconds")


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


TEST_COLUMNS = ("level", "stories", "train_loss", "val_loss", "test_loss", "new_stories_loss",
                "new_stories_floor", "above_floor", "longest_copied_words", "copied_8gram_share",
                "chance_8gram_share", "distinct_2", "real_word_share", "handwritten_loss",
                "handwritten_unknown_share")


REMEDIES = {"dropout 0.2": {"dropout": 0.2}, "weight decay 0.1": {"weight_decay": 0.1}}


def try_remedies(cfg: LevelConfig, baseline: History, more_stories: int = 1000, jobs: int = 2,
                 progress: bool = True) -> tuple[list[dict], dict[str, History]]:
    """The standard remedies for overfitting, each tried alone on the same level and budget.

    baseline: the level's own run (its best point is the early-stopping remedy, for free).
    Returns the table rows and the histories (for the curves); nothing is saved.
    """
    from .sweep import train_many

    runs = {name: cfg.replace(**change) for name, change in REMEDIES.items()}
    runs[f"more data ({more_stories:,} stories)"] = cfg.replace(stories=more_stories)
    histories = {"no remedy": baseline}
    for name, run in zip(runs, train_many(list(runs.values()), jobs, progress, desc="remedies")):
        histories[name] = History.from_dict(run)
    rows = [_remedy_row("no remedy", baseline)]
    best = baseline.best
    rows.append({"remedy": "early stopping (keep the best step)", "best_val": best["val_loss"],
                 "best_step": best["iter"], "final_val": best["val_loss"],
                 "gap": round(best["val_loss"] - best["train_loss"], 4)})
    rows += [_remedy_row(name, h) for name, h in histories.items() if name != "no remedy"]
    return rows, histories


def _remedy_row(name: str, history: History) -> dict:
    return {"remedy": name, "best_val": history.best["val_loss"], "best_step": history.best["iter"],
            "final_val": history.final["val_loss"], "gap": history.final["gap"]}


REMEDY_COLUMNS = ("remedy", "best_val", "best_step", "final_val", "gap")
