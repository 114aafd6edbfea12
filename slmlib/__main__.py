"""`python -m slmlib ...`: the course from the command line. Run with -h for help."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .paths import MODELS_DIR, OUTPUTS_DIR


class UsageError(Exception):
    """Bad command-line input: reported as one line, no traceback."""


def cmd_train(args) -> None:
    from .checkpoint import default_path, resume_path_for
    from .experiments import LADDER_COLUMNS, format_table, resolve_levels, train_ladder
    from .train import train

    overrides = {k: v for k, v in (("max_iters", args.max_iters),) if v is not None}
    if args.resume:
        for cfg in resolve_levels(args.level):
            cfg = cfg.replace(**overrides)
            resume = resume_path_for(default_path(cfg, args.out))
            if not resume.is_file():
                raise UsageError(f"nothing to resume for {cfg.name}: {resume} does not exist")
            history = train(cfg, device=args.device, resume=resume, out=default_path(cfg, args.out))
            print(f"{cfg.name}: {history.status}, final {history.final}")
        return
    levels = resolve_levels(args.level)
    if args.seed_settings:
        from .config import seed_settings

        levels = [seed_settings(cfg) for cfg in levels]
    results = train_ladder(levels, models_dir=args.out, out_dir=args.results, device=args.device, **overrides)
    print(format_table(results, LADDER_COLUMNS))
    if results:
        print(f"\nmodels in {args.out}; curves and results in {args.results}")


def cmd_test(args) -> None:
    from .experiments import TEST_COLUMNS, format_table, test_models

    rows = test_models(models_dir=args.models, n_fresh=args.fresh)
    print(format_table(rows, TEST_COLUMNS))
    print(f"\nwritten: {OUTPUTS_DIR / 'test_results_new_data.json'}")


def cmd_generate(args) -> None:
    from .checkpoint import load_model
    from .generation import generate_text

    if (args.level is None) == (args.checkpoint is None):
        raise UsageError("give exactly one of --level NAME or --checkpoint PATH")
    model, info = load_model(args.checkpoint, level=args.level)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        print(generate_text(model, info["vocab"], args.prompt, args.max_new_tokens,
                            args.temperature, args.top_k, args.seed))


def cmd_info(args) -> None:
    from .checkpoint import read_index
    from .config import LEVELS
    from .data import DataFileError, load_stats
    from .experiments import format_table

    rows = [{"level": f"{c.number} {c.name}", "stories": c.stories, "layers": c.n_layer,
             "heads": c.n_head, "width": c.n_embd, "steps": c.max_iters, "batch": c.batch_size,
             "lr": c.lr, "block": c.block_size} for c in LEVELS.values()]
    print("Levels\n" + format_table(rows, list(rows[0])))
    try:
        stats = load_stats()
        print(f"\nData: compact vocabulary {stats['compact_vocab_size']} GPT-2 ids")
        print(format_table([{"split": k, **v} for k, v in stats["splits"].items()],
                           ["split", "stories", "gpt2_tokens", "distinct_words", "floor_nats_per_token"]))
    except DataFileError as e:
        print(f"\nData: {e}")
    models = read_index(args.models)["models"]
    print(f"\nSaved models in {args.models}: {len(models) or 'none yet (python -m slmlib train --level all)'}")
    if models:
        print(format_table(list(models.values()),
                           ["file", "level", "params", "train_loss", "val_loss", "gap", "seconds"]))


def cmd_data(args) -> None:
    from .data import build_splits, download_tinystories

    if args.action == "build":
        stats = build_splits()
        print(json.dumps(stats["splits"], indent=2))
    else:
        for path in download_tinystories(args.dest, which=args.which):
            print(f"ready: {path}")


def cmd_course(args) -> None:
    from .course import run_course

    if not run_course(smoke=args.smoke, only=args.only, out_dir=args.out):
        sys.exit(1)


def cmd_notebooks(args) -> None:
    from .course import refresh_notebooks

    refresh_notebooks(record=args.action == "refresh")


def cmd_exercises(args) -> None:
    from .exercises import build_exercises

    changed = build_exercises(check=args.check)
    if args.check and changed:
        raise UsageError(f"exercises/ is out of date with solutions/ ({', '.join(changed)}); "
                         "run `python -m slmlib exercises build`")
    print(f"exercises/ {'checked' if args.check else 'rebuilt'}: {len(changed)} file(s) "
          f"{'differ' if args.check else 'changed'}")


def cmd_grade(args) -> None:
    from .exercises import grade_submissions

    grade_submissions(args.submissions, out=args.out, timeout=args.timeout)


def cmd_bench(args) -> None:
    from .bench import run_benchmarks

    run_benchmarks(quick=args.quick, out_dir=args.out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m slmlib", description="SLM Course: train and test five small GPT models.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one level or all of them (the ladder)")
    t.add_argument("--level", default="all", help="ultra_tiny, tiny, small, medium, large, 1-5, a comma list, or all")
    t.add_argument("--out", type=Path, default=MODELS_DIR, help="folder for the checkpoints (default models/)")
    t.add_argument("--max-iters", type=int, help="override the number of training steps (quick tries)")
    t.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda or mps")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run of this level")
    t.add_argument("--seed-settings", action="store_true",
                   help="the seed project's settings (batch 4, lr 1e-3, 200-2000 steps): shows underfitting")
    t.add_argument("--results", type=Path, default=OUTPUTS_DIR, help="folder for curves and ladder_results.json")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("test", help="test saved models on held-out and brand-new stories")
    s.add_argument("--models", type=Path, default=MODELS_DIR, help="folder with the checkpoints")
    s.add_argument("--fresh", type=int, default=200, help="how many brand-new stories to test on")
    s.set_defaults(func=cmd_test)

    g = sub.add_parser("generate", help="continue a prompt with a saved model")
    g.add_argument("--level", help="use the saved model of this level")
    g.add_argument("--checkpoint", type=Path, help="or a checkpoint file")
    g.add_argument("--prompt", required=True, help="the start of the story")
    g.add_argument("--max-new-tokens", type=int, default=100)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=40)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("info", help="levels, data statistics and saved models")
    i.add_argument("--models", type=Path, default=MODELS_DIR)
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("data", help="regenerate the course data, or fetch real TinyStories")
    d.add_argument("action", choices=["build", "download-tinystories"])
    d.add_argument("--dest", type=Path, default=Path("data/tinystories"))
    d.add_argument("--which", nargs="+", default=["valid"], choices=["train", "valid"])
    d.set_defaults(func=cmd_data)

    c = sub.add_parser("course", help="run every lesson notebook with papermill (what `make course` does)")
    c.add_argument("--smoke", action="store_true", help="tiny settings: checks the notebooks run, in about a minute")
    c.add_argument("--only", nargs="+", help="run only notebooks whose names contain these strings")
    c.add_argument("--out", type=Path, default=OUTPUTS_DIR / "executed")
    c.set_defaults(func=cmd_course)

    n = sub.add_parser("notebooks", help="maintainers: strip lesson outputs (refresh: re-record nbval-checked cells)")
    n.add_argument("action", choices=["strip", "refresh"])
    n.set_defaults(func=cmd_notebooks)

    e = sub.add_parser("exercises", help="build exercises/ from solutions/ (never edit exercises/ by hand)")
    e.add_argument("action", choices=["build"])
    e.add_argument("--check", action="store_true", help="only check that exercises/ is up to date")
    e.set_defaults(func=cmd_exercises)

    gr = sub.add_parser("grade", help="run students' exercise notebooks and write a score table")
    gr.add_argument("submissions", type=Path, help="folder with one notebook or one folder per student")
    gr.add_argument("--out", type=Path, default=Path("grades.csv"), help="CSV to write (a report goes beside it)")
    gr.add_argument("--timeout", type=int, default=600, help="seconds allowed per notebook")
    gr.set_defaults(func=cmd_grade)

    b = sub.add_parser("bench", help="measure training speed, vocabulary speed-up, utilisation, generation")
    b.add_argument("--quick", action="store_true", help="short runs (a check that it works, not the numbers)")
    b.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the results")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .config import UnknownLevelError
    from .data import DataFileError, DownloadError
    from .generation import EmptyPromptError
    from .tokenizer import TokenizerFileError
    from .train import TrainingDivergedError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UsageError, CheckpointError, UnknownLevelError, DataFileError, DownloadError,
            EmptyPromptError, TokenizerFileError, TrainingDivergedError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
