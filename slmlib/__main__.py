"""`python -m slmlib ...`: the course from the command line. Run with -h for help."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path

from .config import MAX_ITERS, MAX_SEED
from .errors import CourseError, UsageError
from .paths import MODELS_DIR, OUTPUTS_DIR

TINYSTORIES_DIR = Path("data/tinystories")
INTERRUPTED = 130  # the shell's exit status for Ctrl-C: scripts and make see that the run stopped early


def cmd_train(args) -> int | None:
    from .checkpoint import default_path, model_path
    from .experiments import LADDER_COLUMNS, resolve_levels, train_ladder
    from .tables import format_table
    from .distributed import quiet_unless_main

    quiet_unless_main()  # under torchrun, rank 0 alone prints
    overrides = {k: v for k, v in (("max_iters", args.max_iters), ("micro_batch_size", args.micro_batch),
                                   ("corpus", args.corpus and str(args.corpus))) if v is not None}
    levels = resolve_levels(args.level)
    if args.seed_settings:
        from .config import seed_settings

        levels = [seed_settings(cfg) for cfg in levels]
    results_dir = args.results if args.results is not None else results_folder(args, overrides)
    if args.resume:
        configs = [cfg.replace(**overrides) for cfg in levels]
        outs = [default_path(cfg, args.out) if args.force else model_path(cfg, args.out) for cfg in configs]
        return _resume_ladder(configs, outs, args, results_dir, overrides)
    results = train_ladder(levels, models_dir=args.out, out_dir=results_dir, device=args.device,
                           overwrite=args.force, **overrides)
    if results:
        print(format_table(results, LADDER_COLUMNS))
        print(f"\nmodels in {args.out}; curves and results in {results_dir}")
    if len(results) < len(levels):  # train_ladder stops at the first level that did not complete (Ctrl-C)
        return _stopped(levels[len(results)].name, "interrupted", args)


def results_folder(args, overrides: dict) -> Path:
    """Where a ladder's curves and results go: outputs/ for the levels' own settings only.

    A run with other settings (the README's quick try `--max-iters 3`, the seed's settings) is an
    experiment: its results go to outputs/experiments/ladder_<what changed>/, never over the ladder's.
    With --force its models replace the levels' own, so its results replace theirs too.
    """
    changed = (["seed_settings"] if args.seed_settings else []) + [f"{k}={v}" for k, v in sorted(overrides.items())]
    if not changed or args.force:
        return OUTPUTS_DIR
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "-", "_".join(changed))[:120]
    return OUTPUTS_DIR / "experiments" / f"ladder_{slug}"


def _resume_ladder(configs: list, outs: list[Path], args, results_dir: Path, overrides: dict) -> int | None:
    """Finish an interrupted ladder: levels before the stop are read from their saved models, the
    interrupted one resumes from its file, the rest train; then the ladder's results are written."""
    from .checkpoint import load_model, resume_path_for
    from .distributed import is_main_process
    from .experiments import LADDER_COLUMNS, level_result, write_ladder_outputs
    from .tables import format_table
    from .train import train

    first = next((i for i, out in enumerate(outs) if resume_path_for(out).is_file()), None)
    if first is None:
        names = ", ".join(cfg.name for cfg in configs)
        raise UsageError(f"nothing to resume for {names}: {resume_path_for(outs[0])} does not exist"
                         + (" (nor for the other levels)" if len(outs) > 1 else ""))
    histories, rows = {}, []
    for i, (cfg, out) in enumerate(zip(configs, outs)):
        if i < first and out.is_file():  # finished before the stop: its saved model has its results
            model, info = load_model(out)
            history, stats = info["history"], info["data_stats"]
        else:
            resume = resume_path_for(out)
            history = train(cfg, device=args.device, resume=resume if resume.is_file() else None, out=out,
                            overwrite=args.force)
            if history.status != "completed":
                return _stopped(cfg.name, history.status, args)
            model, stats = history.model, history.data.stats()
            print(f"{cfg.name}: {history.status}, final {history.final}")
        histories[cfg.name] = history
        rows.append(level_result(history, model, stats))
    if is_main_process():
        write_ladder_outputs(histories, rows, results_dir, overrides=overrides, resumed=True)
        print(format_table(rows, LADDER_COLUMNS))
        print(f"\nmodels in {args.out}; curves and results in {results_dir}")


def _stopped(level: str, status: str, args) -> int:
    """Say what stopped and the exact command that continues it (with the same settings)."""
    import shlex

    from .distributed import is_main_process

    same = "".join(f" {flag} {shlex.quote(str(value))}"
                   for flag, value in (("--max-iters", args.max_iters), ("--out", args.out),
                                       ("--micro-batch", args.micro_batch), ("--corpus", args.corpus),
                                       ("--results", args.results))
                   if value is not None and not (flag == "--out" and Path(value) == MODELS_DIR))
    same += " --seed-settings" if args.seed_settings else ""
    same += " --force" if args.force else ""
    launcher = "torchrun ... -m slmlib" if os.environ.get("WORLD_SIZE", "1") != "1" else "python -m slmlib"
    if is_main_process():
        from .experiments import resolve_levels

        later = "; the levels after it were not trained" if len(resolve_levels(args.level)) > 1 else ""
        print(f"training of {level} {status}{later}. Continue it with:\n"
              f"  {launcher} train --level {shlex.quote(args.level)} --resume{same}", file=sys.stderr)
    return INTERRUPTED


def cmd_test(args) -> None:
    from .experiments import TEST_COLUMNS, test_models
    from .tables import format_table

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


def cmd_score(args) -> None:
    from .checkpoint import load_model
    from .surprise import EmptyTextError, score_text, surprising_table, text_to_score
    from .tables import format_table

    if (args.level is None) == (args.checkpoint is None):
        raise UsageError("give exactly one of --level NAME or --checkpoint PATH")
    if (args.text is None) == (args.file is None):
        raise UsageError('give exactly one of --text "..." or --file PATH')
    text = args.text if args.file is None else text_to_score(args.file)
    if not text.strip():
        where = f"{args.file} is empty" if args.file is not None else "the text is empty"
        raise EmptyTextError(f"{where}: give a few words (or a story) to score")
    model, info = load_model(args.checkpoint, level=args.level)
    surprise = score_text(model, info["vocab"], text, label=f"{info['config'].name} ({info['path'].name})")
    print(surprise.summary())
    print(f"\nThe {min(args.top, len(surprise.tokens))} most surprising tokens (loss in nats; "
          "'after': the text just before the token):")
    print(format_table(surprising_table(surprise, args.top),
                       ["position", "token", "loss", "unknown", "after", "model_expected"]))
    unknown = sorted({t.text for t in surprise.tokens if t.unknown})
    if unknown:
        print(f"\nNot in the model's vocabulary (it read them as <unk>): {', '.join(map(repr, unknown[:20]))}"
              + (" ..." if len(unknown) > 20 else ""))
    if args.html is not None:
        from .data import write_atomic

        write_atomic(args.html, f"<!doctype html><meta charset='utf-8'><title>token surprise</title>"
                                f"<body style='font-family:sans-serif'>{surprise.to_html()}</body>\n")
        print(f"\nwritten: {args.html} (open it in a browser: hover a token, click it for the guesses)")


def cmd_info(args) -> None:
    from .checkpoint import read_index
    from .config import LEVELS
    from .data import DataFileError, load_stats
    from .tables import format_table

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
    elif args.action == "prepare-tinystories":
        from .prepare import prepare_tinystories

        dest = args.dest
        if dest is None:  # the default, inside --src: checked before the tokenizing starts, as --dest is
            try:
                dest = out_folder(str(args.src / "prepared"))
            except argparse.ArgumentTypeError as e:
                raise UsageError(f"--src {args.src}: the prepared corpus goes to its prepared/ folder, but {e}; "
                                 "give --dest FOLDER") from None
        prepare_tinystories(args.src, dest, workers=args.workers)
    else:
        for path in download_tinystories(args.dest or TINYSTORIES_DIR, which=args.which):
            print(f"ready: {path}")


def cmd_course(args) -> None:
    from .tooling.course import run_course

    if not run_course(smoke=args.smoke, only=args.only, out_dir=args.out, fresh=args.fresh):
        sys.exit(1)


def cmd_notebooks(args) -> None:
    from .tooling.course import refresh_notebooks

    refresh_notebooks(record=args.action == "refresh")


def cmd_exercises(args) -> None:
    from .exercises import SOLUTIONS_DIR, build_exercises

    for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        check_notebook(path, "solution notebook")
    if args.action == "nbgrader":
        return _nbgrader_source(args.dest)
    if args.dest is not None:
        raise UsageError(f"`exercises build` takes no folder (got {args.dest}); "
                         "`exercises nbgrader DIR` writes an nbgrader course folder")
    changed = build_exercises(check=args.check)
    if args.check and changed:
        raise UsageError(f"exercises/ is out of date with solutions/ ({', '.join(changed)}); "
                         "run `python -m slmlib exercises build`")
    print(f"exercises/ {'checked' if args.check else 'rebuilt'}: {len(changed)} file(s) "
          f"{'differ' if args.check else 'changed'}")


def _nbgrader_source(dest: Path | None) -> None:
    from .tooling.nbgrader_export import write_nbgrader_source

    if dest is None:
        raise UsageError("give the folder to write: `python -m slmlib exercises nbgrader DIR` "
                         "(an nbgrader course folder: DIR/source/<exercise>/...)")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file: give a folder for the nbgrader course")
    written = write_nbgrader_source(dest)
    print(f"nbgrader source: {len(written)} file(s) in {dest / 'source'}/ (one assignment per exercise). "
          f"Then, in {dest}: `nbgrader generate_assignment ex01_tokens`, and after collecting, "
          "`SLM_SMOKE=1 nbgrader autograde ex01_tokens` (see the README's grading section).")


def cmd_release(args) -> None:
    from .tooling.release import build_release

    written = build_release(args.dest, force=args.force, with_runs=args.with_runs)
    runs = sum(1 for p in written if p.parent.name == "runs")
    print(f"student release: {len(written)} files in {args.dest} (lessons, exercises, data, slmlib, set-up"
          + (f", and your {runs} small runs of lessons 04 and 08, which the students' lessons will load" if runs else "")
          + "; no solutions/, and no solution line found in it). Hand out that folder; `make lab` inside it "
          "sets up and opens the course.")


def cmd_grade(args) -> int | None:
    from .tooling.grading import grade_submissions

    try:
        cap = {} if args.memory_mb is None else {"memory_mb": args.memory_mb}
        grade_submissions(args.submissions, out=args.out, timeout=args.timeout, jobs=args.jobs, force=args.force,
                          **cap)
    except KeyboardInterrupt:  # grade_submissions has said what it kept and how to go on
        return INTERRUPTED


def cmd_sweep(args) -> int | None:
    """The controlled experiment: the whole sweep, one student's cells, or the class's merged."""
    from . import sweep
    from .tables import format_table

    seeds = args.seeds or sweep.SWEEP_SEEDS
    if (args.cell is None) != (args.of is None):
        raise UsageError("--cell and --of go together: --cell K --of N runs student K's share (K from 0 to N-1)")
    if args.collect is not None:
        result, problems = sweep.collect(args.collect)
        for problem in problems:
            print(f"note: {problem}")
        if result is None:
            return 1
        out = args.out or OUTPUTS_DIR
        sweep.write_sweep(result, out / "class_sweep")
        print(f"\n{sum(r['seeds'] for r in result['summary'])} runs from {args.collect}:")
    elif args.cell is not None:
        paths = sweep.run_cells(args.cell, args.of, args.out or OUTPUTS_DIR / "sweep_cells", seeds=seeds)
        print("hand these files back:\n" + "\n".join(f"  {p}" for p in paths))
        return None
    else:
        result = sweep.data_sweep(seeds=seeds, jobs=args.jobs, out_dir=args.out or OUTPUTS_DIR)
    print(format_table(result["summary"], sweep.SWEEP_COLUMNS))
    print("\n" + sweep.fit_line(result))
    return None


def cmd_bench(args) -> None:
    from .tooling.bench import run_benchmarks

    run_benchmarks(quick=args.quick, out_dir=args.out)


def check_notebook(path: Path, what: str = "notebook") -> None:
    """A notebook that does not read or validate stops here, named, instead of deep inside nbformat."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except OSError as e:
        raise UsageError(f"cannot read the {what} {path}: {e.strerror or e}") from None
    except Exception as e:  # not JSON, not a notebook, invalid against the schema
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"the {what} {path} is not a valid notebook ({type(e).__name__}: {reason[:200]}); "
                         "restore it, e.g. `git checkout -- " f"{path}`, or fix its JSON") from None


# ---------------------------------------------------------------- argument types: refused before any work

def whole_number(low: int, high: int | None = None):
    """An argparse type: a whole number from low (to high), or a one-line error naming the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            allowed = f"from {low:,} to {high:,}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be a whole number {allowed}, got {text}")
        return value
    return parse


def max_new_tokens(text: str) -> int:
    from .generation import MAX_NEW_TOKENS  # here: importing torch for every --help is slow

    return whole_number(1, MAX_NEW_TOKENS)(text)


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (0: always the likeliest token), got {text}")
    return value


def device_name(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda (or cuda:N) or mps")
    return text


def folder(text: str) -> Path:
    """A folder to write into: it may not exist yet, but no part of it may be a file."""
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise argparse.ArgumentTypeError(f"{part} is a file, not a folder; give a folder "
                                                 "(it is created if it does not exist)")
            break
    return path


def seed_list(text: str) -> list[int]:
    """'1-6' or '1,2,3' -> [1, 2, ...]."""
    try:
        if "-" in text.strip("-"):
            low, high = (int(x) for x in text.split("-", 1))
            seeds = list(range(low, high + 1))
        else:
            seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or max(seeds) > 2**31:
        raise argparse.ArgumentTypeError(f"{text!r}: give seeds as 1-6 or 1,2,3 (whole numbers from 0)")
    return sorted(set(seeds))


def out_folder(text: str) -> Path:
    """A folder to write into, checked now (not after minutes of work): created if missing, writable."""
    import tempfile

    path = folder(text)
    existing = next(part for part in (path, *path.parents) if part.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write into {existing} ({e.strerror or e}); "
                                         "choose a folder you can write to") from None
    return path


def out_file(text: str) -> Path:
    """A file to write, checked now: not a folder, and its folder writable."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name, e.g. {path / 'surprise.html'}")
    out_folder(str(path.parent))
    return path


def level_list(text: str) -> str:
    """Levels for `train --level`: a name, a number, a comma list or all; never empty, each one known."""
    from .config import UnknownLevelError, get_level

    names = [part for part in text.split(",") if part.strip()]
    if text.strip() != "all" and not names:
        raise argparse.ArgumentTypeError("give a level: ultra_tiny, tiny, small, medium, large, 1-5, "
                                         "a comma list, or all")
    for name in names if text.strip() != "all" else ():
        try:
            get_level(name)
        except UnknownLevelError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m slmlib", description="SLM Course: train and test five small GPT models.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one level or all of them (the ladder)")
    t.add_argument("--level", type=level_list, default="all",
                   help="ultra_tiny, tiny, small, medium, large, 1-5, a comma list, or all")
    t.add_argument("--out", type=out_folder, default=MODELS_DIR, help="folder for the checkpoints (default models/)")
    t.add_argument("--max-iters", type=whole_number(1, MAX_ITERS),
                   help="override the number of training steps (quick tries)")
    t.add_argument("--device", type=device_name, default="auto", help="auto (GPU if present), cpu, cuda or mps")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run of this level")
    t.add_argument("--force", action="store_true",
                   help="save a run with other settings as the level's own model (the old one is kept "
                        "as .previous.pt); without it such runs go to models/experiments/")
    t.add_argument("--seed-settings", action="store_true",
                   help="the seed project's settings (batch 4, lr 1e-3, 200-2000 steps): shows underfitting")
    t.add_argument("--results", type=out_folder,
                   help="folder for curves and ladder_results.json (default: outputs/ for the levels' own "
                        "settings, outputs/experiments/ladder_<changes>/ for any other run)")
    t.add_argument("--corpus", type=Path, help="train on this TinyStories folder (text files, or prepared "
                                               "with `data prepare-tinystories`) instead of the course's stories")
    t.add_argument("--micro-batch", type=whole_number(1),
                   help="windows per forward pass on each process; gradient accumulation makes up the batch")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("test", help="test saved models on held-out and brand-new stories")
    s.add_argument("--models", type=folder, default=MODELS_DIR, help="folder with the checkpoints")
    s.add_argument("--fresh", type=whole_number(1, 100_000), default=200, help="how many brand-new stories to test on")
    s.set_defaults(func=cmd_test)

    g = sub.add_parser("generate", help="continue a prompt with a saved model")
    g.add_argument("--level", help="use the saved model of this level")
    g.add_argument("--checkpoint", type=Path, help="or a checkpoint file")
    g.add_argument("--prompt", required=True, help="the start of the story")
    g.add_argument("--max-new-tokens", type=max_new_tokens, default=100, help="at most this many new tokens")
    g.add_argument("--temperature", type=temperature, default=0.8, help="0: greedy; higher: wilder")
    g.add_argument("--top-k", type=whole_number(0), default=40, help="sample from the k likeliest tokens (0: all)")
    g.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0, help="the same seed gives the same text")
    g.set_defaults(func=cmd_generate)

    sc = sub.add_parser("score", help="how surprised a saved model is by each token of a text")
    sc.add_argument("--level", help="use the saved model of this level")
    sc.add_argument("--checkpoint", type=Path, help="or a checkpoint file")
    sc.add_argument("--text", help="the text to score")
    sc.add_argument("--file", type=Path, help="or a UTF-8 text file (TinyStories format: scored story by story)")
    sc.add_argument("--top", type=whole_number(1, 1000), default=10, help="how many of the most surprising tokens to list")
    sc.add_argument("--html", type=out_file, help="also write the coloured view to this HTML file")
    sc.set_defaults(func=cmd_score)

    i = sub.add_parser("info", help="levels, data statistics and saved models")
    i.add_argument("--models", type=folder, default=MODELS_DIR)
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("data", help="regenerate the course data, fetch real TinyStories, or tokenize it once")
    d.add_argument("action", choices=["build", "download-tinystories", "prepare-tinystories"])
    d.add_argument("--dest", type=out_folder, help=f"where to put TinyStories (default {TINYSTORIES_DIR}) or the "
                                               "prepared corpus (default: the --src folder's prepared/)")
    d.add_argument("--which", nargs="+", default=["valid"], choices=["train", "valid"])
    d.add_argument("--src", type=folder, default=TINYSTORIES_DIR,
                   help="prepare-tinystories: the folder with the TinyStoriesV2 train and valid files")
    d.add_argument("--workers", type=whole_number(1, 1024), help="prepare-tinystories: processes (default: all cores)")
    d.set_defaults(func=cmd_data)

    c = sub.add_parser("course", help="run every lesson notebook with papermill (what `make course` does)")
    c.add_argument("--smoke", action="store_true", help="tiny settings: checks the notebooks run; everything it writes, models "
                        "included, goes to outputs/smoke/, never over the real run's results")
    c.add_argument("--only", nargs="+", help="run only notebooks whose names contain these strings")
    c.add_argument("--fresh", action="store_true",
                   help="rerun every lesson, even those an interrupted earlier run already finished")
    c.add_argument("--out", type=out_folder, help="folder for the executed notebooks (default outputs/executed/; "
                                                  "with --smoke, outputs/smoke/executed/)")
    c.set_defaults(func=cmd_course)

    n = sub.add_parser("notebooks", help="maintainers: strip lesson outputs (refresh: re-record nbval-checked cells)")
    n.add_argument("action", choices=["strip", "refresh"])
    n.set_defaults(func=cmd_notebooks)

    e = sub.add_parser("exercises", help="build exercises/ from solutions/ (never edit exercises/ by hand), "
                                         "or an nbgrader source from them")
    e.add_argument("action", choices=["build", "nbgrader"],
                   help="build: rewrite exercises/; nbgrader: write an nbgrader course folder in DIR")
    e.add_argument("dest", type=Path, nargs="?", metavar="DIR", help="with nbgrader: the folder to write")
    e.add_argument("--check", action="store_true", help="only check that exercises/ is up to date")
    e.set_defaults(func=cmd_exercises)

    r = sub.add_parser("release", help="build the folder students get: everything but solutions/",
                       description="Copies the lessons, exercises, data, slmlib and the set-up files into DEST, "
                                   "then reads it back and refuses (removing DEST) if any solution text is in it.")
    r.add_argument("dest", type=Path, help="a new or empty folder, e.g. build/student-release")
    r.add_argument("--force", action="store_true", help="replace an earlier release in DEST")
    r.add_argument("--with-runs", action="store_true",
                   help="also ship your finished small runs of lessons 04 and 08 (outputs/runs/), so the "
                        "students' lessons load them and train only the ladder (for slow laptops)")
    r.set_defaults(func=cmd_release)

    gr = sub.add_parser("grade", help="run students' exercise notebooks and write a score table",
                        description="Runs every notebook in a copy of its submission, with a kernel of its own, "
                                    "in a bubblewrap sandbox where one works (else as you: then grade in an "
                                    "account you don't mind the students' code using). The checks come from "
                                    "exercises/, never from the notebooks.")
    gr.add_argument("submissions", type=Path,
                    help="folder with one notebook or one folder per student (or a single notebook)")
    gr.add_argument("--out", type=Path, default=Path("grades.csv"),
                    help="CSV to write (beside it: grades.md, grades.html, grades_by_student.csv, feedback/ "
                         "and graded/); a rerun skips the notebooks it already holds")
    gr.add_argument("--timeout", type=whole_number(1), default=600, help="seconds allowed per notebook")
    gr.add_argument("--jobs", type=whole_number(1, 256),
                    help="notebooks graded at the same time (default: one per two cores, as memory allows; "
                         "2 jobs on 2 cores were measured slower than 1)")
    gr.add_argument("--memory-mb", type=whole_number(0),
                    help="memory each notebook may use, in MB (default 4096; Linux only; 0: no cap)")
    gr.add_argument("--force", action="store_true",
                    help="replace an --out file (or its .md) that is not a grade table written by grade")
    gr.set_defaults(func=cmd_grade)

    sw = sub.add_parser("sweep", help="the controlled experiment: only the data changes (lesson 08)",
                        description="Train one fixed model and recipe on 100 to 10,000 stories, 3 seeds each, "
                        "fit the data scaling law and test it on a held-out size. Runs kept in outputs/runs/ "
                        "are reused. A class can share the work: each student runs --cell K --of N and hands "
                        "back the JSON files; --collect FOLDER merges them.")
    sw.add_argument("--cell", type=whole_number(0), help="this student's number, from 0 (with --of)")
    sw.add_argument("--of", type=whole_number(1), help="how many students share the sweep")
    sw.add_argument("--seeds", type=seed_list, help="seeds, e.g. 1-6 or 1,2,3 (default 1,2,3)")
    sw.add_argument("--collect", type=folder, help="merge the cells a class handed back (a folder of JSON files)")
    sw.add_argument("--jobs", type=whole_number(1, 64), default=2, help="runs in parallel (default 2)")
    sw.add_argument("--out", type=out_folder, help="where to write (default outputs/, cells: outputs/sweep_cells/)")
    sw.set_defaults(func=cmd_sweep)
    b = sub.add_parser("bench", help="measure training speed, vocabulary speed-up, utilisation, generation")
    b.add_argument("--quick", action="store_true", help="short runs (a check that it works, not the numbers)")
    b.add_argument("--out", type=out_folder, default=Path("benchmarks/results"), help="folder for the results")
    b.set_defaults(func=cmd_bench)
    # No abbreviations: `train --seed 3` would silently mean --seed-settings, which ignores the number's meaning.
    for parser in (p, *sub.choices.values()):
        parser.allow_abbrev = False
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except CourseError as e:  # anything the user can fix: one line; a bug keeps its traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which saves and returns by itself)
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
