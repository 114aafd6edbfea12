"""Small helpers the lesson notebooks share: parameter checks, smoke settings, summaries."""
from __future__ import annotations

import os

from .config import LevelConfig, get_level
from .errors import CourseError, is_whole_number

# Smoke mode: the same code path at toy scale, so tests run every notebook in seconds.
SMOKE_SETTINGS = {"max_iters": 20, "eval_interval": 10, "eval_windows": 16}
# ... and of the small runs' recipe (lesson 04's remedies, lesson 08's sweep): ten steps, evaluated twice.
SMOKE_RECIPE_SETTINGS = {"max_iters": 10, "eval_interval": 5, "eval_windows": 8, "warmup_iters": 2}
DEVICES = ("auto", "cpu", "cuda", "mps")


class ParameterError(CourseError, ValueError):
    """A papermill parameter with a wrong type or value."""


def smoke_mode(smoke: bool | None) -> bool:
    """The notebook's smoke parameter; None means: ask the SLM_SMOKE environment variable."""
    if smoke is None:
        return os.environ.get("SLM_SMOKE", "0") == "1"
    return smoke


LEVEL_LESSONS = {"ultra_tiny": "03_ultra_tiny", "tiny": "04_tiny", "small": "05_small", "medium": "06_medium",
                 "large": "07_large"}


def check_parameters(**params) -> None:
    """Fail at the top of a notebook, with the fix, instead of deep inside a cell.

    lesson_level: the level a lesson (03-07) is written about; its `level` parameter may not name
    another one, since the lesson's text would then describe a run it did not make.
    """
    lesson_level = params.pop("lesson_level", None)
    for name, value in params.items():
        if name == "smoke" and not isinstance(value, bool):
            raise ParameterError(f"parameter smoke must be True or False, got {value!r} "
                                 "(papermill: -p smoke True)")
        if name == "device" and value not in DEVICES:
            raise ParameterError(f"parameter device must be one of {', '.join(DEVICES)}, got {value!r}")
        # papermill's `-p max_iters True` arrives as a bool, and True is an int in Python
        if name in ("seed",) and not is_whole_number(value):
            raise ParameterError(f"parameter {name} must be a whole number, got {value!r} "
                                 f"(papermill: -p {name} 1337)")
        if name == "max_iters" and value is not None and (not is_whole_number(value) or value < 1):
            raise ParameterError(f"parameter max_iters must be a whole number >= 1 or None, got {value!r} "
                                 "(papermill: -p max_iters 200)")
        if name == "level":
            chosen = get_level(value).name  # raises UnknownLevelError listing the valid levels
            if lesson_level is not None and chosen != lesson_level:
                lesson = LEVEL_LESSONS.get(chosen)
                where = (f"run notebooks/{lesson}.ipynb instead" if lesson else
                         f"train it with `python -m slmlib train --level {chosen}`")
                raise ParameterError(f"parameter level: this lesson is about {lesson_level} and its text describes "
                                     f"that level's run, so it cannot train {chosen}; {where} "
                                     "(-p max_iters N still shortens this lesson's own run)")


class Lesson:
    """A lesson's checked parameters, and the sizes of its side runs (smaller in smoke mode, so the
    tests run every notebook in seconds): lessons 00-02, 09 and 10 (03-07 have LevelLesson)."""

    def __init__(self, smoke: bool, device: str, seed: int):
        self.smoke, self.device, self.seed = smoke, device, seed
        self.sample_tokens = 25 if smoke else 60  # lesson 09's side-by-side samples
        self.demo_steps = 20 if smoke else 200  # lesson 10's run on TinyStories (or its stand-in)
        # Lesson 08: the levels' saved runs (the tests' smoke runs live in models/experiments/), the
        # sweep (three toy sizes in smoke mode), and the new-stories test.
        self.level_settings = SMOKE_SETTINGS if smoke else None
        self.fresh_stories, self.test_tokens = (20, 30) if smoke else (200, 80)

    def sweep_settings(self) -> dict:
        """data_sweep's arguments: the course's sweep, or in smoke mode a toy one that runs in seconds."""
        from .sweep import SWEEP_CONFIG

        if not self.smoke:
            return {}
        return {"stories": (20, 40, 80), "seeds": (1, 2), "held_out": 60, "jobs": 1,
                "base": SWEEP_CONFIG.replace(**SMOKE_RECIPE_SETTINGS)}

    def level_model(self, level):
        """(model, info) of the level's saved model, None if it has none (in smoke mode: the tests' run)."""
        from .surprise import load_level_model

        return load_level_model(level, settings=SMOKE_SETTINGS if self.smoke else None)


def start_lesson(smoke: bool | None = None, device: str = "auto", seed: int = 1337) -> Lesson:
    """Check a lesson's parameters at its top, with the fix, and return what its cells need."""
    from .allocator import keep_freed_blocks

    smoke = smoke_mode(smoke)
    check_parameters(smoke=smoke, device=device, seed=seed)
    keep_freed_blocks()  # for the whole lesson: its evaluation and generation too, not only train()
    return Lesson(smoke, device, seed)


def shown_path(path) -> str:
    """A path as a lesson prints it: relative to the course folder (the machine's own folders say nothing)."""
    from pathlib import Path

    from .paths import ROOT

    path = Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def level_config(level, smoke: bool = False, max_iters: int | None = None, seed: int | None = None) -> LevelConfig:
    """The level's settings, shrunk in smoke mode, with optional overrides."""
    check_parameters(level=level, smoke=smoke, max_iters=max_iters, **({} if seed is None else {"seed": seed}))
    cfg = get_level(level)
    if smoke:
        cfg = cfg.replace(**SMOKE_SETTINGS)
    if max_iters is not None:
        cfg = cfg.replace(max_iters=max_iters, eval_interval=max(1, min(cfg.eval_interval, max_iters // 5)))
    if seed is not None:
        cfg = cfg.replace(seed=seed)
    return cfg


def describe(cfg: LevelConfig, data) -> str:
    s = data.stats()
    tokens_seen = cfg.max_iters * cfg.tokens_per_batch
    return (f"Level {cfg.number} '{cfg.name}': {cfg.stories:,} training stories = {s['train_tokens']:,} tokens\n"
            f"Model: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, vocabulary {s['vocab_size']:,}\n"
            f"Training: {cfg.max_iters:,} steps x {cfg.batch_size} windows x {cfg.block_size} tokens = "
            f"{tokens_seen:,} tokens = {tokens_seen / s['train_tokens']:.1f} passes over the training text; "
            f"learning rate {cfg.lr:g} (warm-up {cfg.warmup_iters} steps, then {cfg.lr_schedule} decay)")


TURNED_UP = 0.05  # nats: a validation loss this far above its best has turned up (the fixed windows' noise is smaller)
FAR_ABOVE_FLOOR = 1.0  # nats: a training loss this far above the entropy floor has not fitted its stories yet


def verdict(gap: float, rise: float | None = None, train_above_floor: float | None = None,
            still_falling: bool | None = None) -> str:
    """One line on what the run shows. Only the gap when nothing else is known; with the run's history
    (rise: how far the validation loss came back up after its best; train_above_floor: final training
    loss minus the entropy floor; still_falling: the validation loss was still going down at the end)
    a run that has not turned up and is far from fitting its stories is called what it is: underfit.
    """
    turned_up = rise is not None and rise >= TURNED_UP
    far = train_above_floor is not None and train_above_floor > FAR_ABOVE_FLOOR
    if not turned_up and (far or (train_above_floor is None and still_falling)):
        why = (f"the training loss is still {train_above_floor:.2f} nats above the floor" if far
               else "the validation loss was still falling at the end")
        return (f"underfit: still learning ({why} and the validation loss has not turned up, so a gap of "
                f"{gap:+.2f} is not overfitting yet; train longer before judging)")
    rose = f", and the validation loss turned up by {rise:+.3f} after its best" if turned_up else ""
    if gap >= 0.3:
        return f"clear overfitting: the model does much better on stories it has seen{rose}"
    if gap >= 0.1 and (turned_up or rise is None):
        return f"some overfitting{rose}"
    if gap >= 0.1:  # lesson 03: overfitting is the U-turn, not a small gap alone
        return (f"a gap of {gap:+.2f} but no U-turn: the model does a little better on its own stories while "
                "its validation loss is still falling, so not overfitting (yet)")
    if gap < 0:
        return ("no gap: slightly lower on unseen stories, which is noise (the two numbers come from "
                "different windows of text), not a model that prefers new stories")
    return "almost no gap: the model does as well on new stories as on its training stories"


def run_verdict(history, floor: float | None = None) -> str:
    """verdict() for a finished run: the gap, and what its curves and the floor say."""
    f, vals = history.final, history.val_loss
    still_falling = bool(history.best and len(vals) >= 2 and history.best["iter"] == history.iters[-1]
                         and vals[-1] < vals[-2] - 0.01)
    return verdict(f["gap"], rise=history.overfit_by,
                   train_above_floor=None if floor is None else f["train_loss"] - floor, still_falling=still_falling)


def summarize(history, floor: float | None = None) -> str:
    """The run in a few lines: final losses and gap, the best validation point, the floor."""
    if history.status != "completed":  # stopped early: nothing final to report yet
        return (f"training {history.status} after {history.seconds:.1f} s; "
                f"resume with train(cfg, resume='{history.resume_path}')")
    f = history.final
    windows = f.get("windows")
    measured = (f" (each measured on the same {windows} windows x {f['tokens_per_split'] // windows} tokens "
                "of its split as every point of the curves)") if windows and f.get("tokens_per_split") else ""
    lines = [f"at the end: train loss {f['train_loss']:.3f}   val loss {f['val_loss']:.3f}   "
             f"gap {f['gap']:+.3f} nats{measured}"]
    best = history.best
    if best:
        total = history.config.get("max_iters") or history.records[-1]["iter"]
        rise = history.overfit_by
        after = (f"; at the end {f['val_loss']:.3f} ({rise:+.3f} from training past the best: overfitting)"
                 if rise and rise > 0 else " (the last evaluation: no rise yet)")
        lines.append(f"best val {best['val_loss']:.3f} at step {best['iter']} of {total}{after}")
    if floor is not None:
        lines.append(f"entropy floor {floor:.3f}: val loss is {f['val_loss'] - floor:.3f} nats above it, "
                     f"train loss {f['train_loss'] - floor:+.3f}")
    lines.append(f"verdict: {run_verdict(history, floor)}")
    lines.append(f"trained in {history.seconds:.1f} s; "
                 + (f"saved to {shown_path(history.path)}" if history.path else "not saved"))
    return "\n".join(lines)


def recital_line(result: dict) -> str:
    """The recital test in one sentence per side."""
    n = result["continue_words"]
    parts = [f"{side:>6} stories: {r['matched_words']:5.2f} of the next {n} words right on average, "
             f"{r['exact_share']:.0%} recited word for word ({r['stories']} stories)"
             for side, r in (("train", result["train"]), ("unseen", result["unseen"]))]
    return "\n".join(parts) + f"\nratio train/unseen: {result['ratio']:g}x"


def _recital_cell(example: dict) -> str:
    from html import escape

    words = []
    for i, w in enumerate(example["generated"]):
        right = i < example["matched"]
        style = "background:#c8f7c5" if right else "color:#999"
        words.append(f'<span style="{style}">{escape(w)}</span>')
    return (f'<p style="margin:0"><i>{escape(example["prompt"][-160:])}</i></p>'
            f'<p style="margin:4px 0"><b>real:</b> {escape(" ".join(example["real"]))}</p>'
            f'<p style="margin:0"><b>model:</b> {" ".join(words)}</p>'
            f'<p style="margin:2px 0;font-size:90%">{example["matched"]} of {len(example["real"])} words right</p>')


def show_recital(result: dict, index: int | None = None):
    """A training story and an unseen one side by side: the real words and the model's.

    Green words are right (up to the first mistake); grey ones come after it. By default each
    side shows the story the model continues best, the same rule on both sides, so the
    difference between them is the model's and not the choice of example.
    """
    from IPython.display import HTML

    def pick(side):
        examples = result[side]["examples"]
        return examples[index] if index is not None else max(examples, key=lambda e: e["matched"])

    cells = "".join(
        f'<td style="vertical-align:top;width:50%;padding:6px;text-align:left">'
        f'<b>{title}</b><br>{_recital_cell(pick(side))}</td>'
        for side, title in (("train", "a story it trained on"), ("unseen", "a story it never saw")))
    return HTML(f'<table style="border-collapse:collapse;width:100%"><tr>{cells}</tr></table>')


def copy_line(copied: dict, chance: dict) -> str:
    """How much a sample copies from training, next to what a brand-new story shares by chance."""
    key = next(k for k in copied if k.startswith("copied_"))
    excess = copied[key] - chance[key]
    return (f"   -> {copied[key]:.0%} of its 8-word phrases appear in training "
            f"(chance: {chance[key]:.0%}, so {excess:+.0%} over chance); "
            f"longest copied run {copied['longest_copied_words']} words (chance: {chance['longest_copied_words']})")


class LevelLesson:
    """What a level's lesson (03-07) needs, set up in one call so its cells show only the lesson.

    cfg, data: the level's settings and stories; refs: the reference losses (uniform, unigram,
    bigram, floor) on the validation windows every curve point uses; and the sizes of the
    lesson's side experiments, smaller in smoke mode so the tests run every notebook quickly.
    """

    def __init__(self, cfg: LevelConfig, data, smoke: bool, device: str):
        from .metrics import reference_losses

        self.cfg, self.data, self.smoke, self.device = cfg, data, smoke, device
        self.floor = data.floor.get("val")
        self.refs = reference_losses(data, cfg.eval_windows, cfg.block_size)
        self.recital_stories = 5 if smoke else 20
        self.chance_stories = 5 if smoke else 20
        self.sample_tokens = 30 if smoke else 80
        self.jobs = 1 if smoke else 2

    @property
    def remedy_recipe(self) -> LevelConfig:
        """Lesson 04's remedies run on the controlled experiment's recipe (a few steps in smoke mode)."""
        from .sweep import SWEEP_CONFIG

        return SWEEP_CONFIG.replace(**SMOKE_RECIPE_SETTINGS) if self.smoke else SWEEP_CONFIG

    def __str__(self) -> str:
        r = self.refs
        return (describe(self.cfg, self.data) + "\n"
                f"Reference points (validation loss, nats per token): knowing nothing (uniform over "
                f"{len(self.data.vocab):,} tokens) {r['uniform']:.3f} · unigram counts {r['unigram']:.3f} · "
                f"bigram counts {r['bigram']:.3f} · entropy floor {r.get('floor', float('nan')):.3f}")


def start_level_lesson(level, lesson_level: str | None = None, smoke: bool | None = None, device: str = "auto",
                       seed: int | None = None, max_iters: int | None = None) -> LevelLesson:
    """Check the lesson's parameters, load its level's settings and stories, print what they are."""
    from .allocator import keep_freed_blocks
    from .data import load_data

    smoke = smoke_mode(smoke)
    check_parameters(smoke=smoke, device=device, level=level, max_iters=max_iters,
                     lesson_level=lesson_level, **({} if seed is None else {"seed": seed}))
    keep_freed_blocks()
    cfg = level_config(level, smoke=smoke, max_iters=max_iters, seed=seed)
    lesson = LevelLesson(cfg, load_data(cfg), smoke, device)
    print(lesson)
    return lesson


def reference_line(history, refs: dict) -> str:
    """Where the run's best validation loss sits among the reference models."""
    best = history.best["val_loss"]
    parts = [f"{name} {value:.3f} ({best - value:+.3f})" for name, value in refs.items()]
    return f"best val {best:.3f} against the references (difference in brackets): " + " · ".join(parts)


LADDER_SETTINGS = ("stories", "n_layer", "n_embd", "max_iters", "batch_size", "lr")


def compare_with_previous(history, smoke: bool = False) -> str:
    """This level beside the one before it: what changed in the settings, and in the results.

    The ladder changes several settings at once, so the lines say what changed rather than why
    the loss moved: lesson 08's controlled experiment changes one thing at a time.
    """
    from .checkpoint import load_model, model_path
    from .config import LEVELS

    cfg = history.config
    previous = next((c for c in LEVELS.values() if c.number == cfg["number"] - 1), None)
    if previous is None:
        return ""
    path = model_path(level_config(previous.name, smoke=smoke))
    if not path.is_file():
        return f"(run lesson {LEVEL_LESSONS[previous.name][:2]} to see {previous.name} here too)"
    before = load_model(path)[1]["history"]
    changes = [f"{key} {before.config[key]:,} -> {cfg[key]:,}" if isinstance(cfg[key], int)
               else f"{key} {before.config[key]:g} -> {cfg[key]:g}"
               for key in LADDER_SETTINGS if before.config.get(key) != cfg[key]]
    lines = [f"changed from {previous.name}: " + (", ".join(changes) or "nothing")]
    for name, h in ((previous.name, before), (cfg["name"], history)):
        lines.append(f"{name:<11} gap {h.gap:+.3f}   best val {h.best['val_loss']:.3f} at step {h.best['iter']:,}   "
                     f"train {h.final['train_loss']:.3f}   val {h.final['val_loss']:.3f}   "
                     f"{steps_line(h)}")
    return "\n".join(lines)


def steps_line(history, flat: float = 0.02) -> str:
    """Did the validation loss flatten, or was it still falling when the steps ran out?"""
    gained = history.fell_over_last_fifth
    if history.overfit_by and history.overfit_by > flat:
        return "(turned up)"
    state = "still falling: limited by steps" if gained >= flat else "flattened"
    return f"({gained:+.3f} over the last fifth: {state})"
