"""Figures for the lessons: loss curves, the gap against data size, next-token bars."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt

TRAIN_STYLE = {"linestyle": "-", "linewidth": 2}
VAL_STYLE = {"linestyle": "--", "linewidth": 2}
FLOOR_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1.5}


def plot_history(history, floor: float | None = None, ax=None, title: str | None = None, color=None):
    """Train and val loss against training steps for one run."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    line, = ax.plot(history.iters, history.train_loss, label="train", color=color, **TRAIN_STYLE)
    ax.plot(history.iters, history.val_loss, label="val (unseen stories)", color=line.get_color()
            if color else None, **VAL_STYLE)
    best = getattr(history, "best", None)
    if best and history.records and best["iter"] < history.records[-1]["iter"]:
        ax.plot([best["iter"]], [best["val_loss"]], marker="v", markersize=9, color="black", linestyle="none",
                label=f"best val {best['val_loss']:.2f} (step {best['iter']})")
    if floor is not None:
        ax.axhline(floor, label=f"entropy floor {floor:.2f}", **FLOOR_STYLE)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats per token)")
    if title is None and history.config:
        title = f"{history.config.get('name', '')}: {history.config.get('stories', '?')} stories"
    if history.gap is not None:  # the last point's gap: the same number the summary prints
        title = f"{title}  (gap {history.gap:+.2f})"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return ax


class LiveLossPlot:
    """Callback for `train(..., callbacks=[LiveLossPlot()])`: a plot that redraws in place.

    The last drawing stays in the notebook as an ordinary image, so papermill's executed
    copy shows the final curves too.
    """

    def __init__(self, floor: float | None = None, title: str | None = None):
        self.floor, self.title, self.handle = floor, title, None

    def __call__(self, history) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:  # plain Python: nothing to draw on
            return
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        plot_history(history, self.floor, ax=ax, title=self.title)
        fig.tight_layout()
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def plot_ladder_curves(histories: Mapping[str, object], floor: float | None = None,
                       path: str | Path | None = None):
    """One panel per level, train solid and val dashed; the gap grows as the data shrinks."""
    n = len(histories)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), sharey=True, squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items()):
        plot_history(history, floor, ax=ax, title=f"{name}\n{history.config.get('stories')} stories")
        ax.title.set_fontsize(9)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
            ax.get_legend().remove()
    fig.tight_layout()
    return _finish(fig, path)


def plot_gap_vs_data(results: Sequence[Mapping], path: str | Path | None = None):
    """The course in one picture: train/val gap (and val loss above the floor) vs stories."""
    stories = [r["stories"] for r in results]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(stories, [r["gap"] for r in results], "o-", label="gap: val - train", linewidth=2)
    if all(r.get("floor") is not None for r in results):
        ax.plot(stories, [r["val_loss"] - r["floor"] for r in results], "s--",
                label="val loss above the entropy floor")
    for r in results:
        ax.annotate(r["level"], (r["stories"], r["gap"]), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training stories (log scale)")
    ax.set_ylabel("nats per token")
    ax.set_title("The ladder: the gap and the distance to the floor as everything grows")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _finish(fig, path)


def plot_next_token_probs(tokens: Sequence[str], probs: Sequence[float], title: str = "next token", ax=None):
    """Horizontal bars: the model's top candidates for the next token."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(tokens) + 1))
    labels = [repr(t) for t in tokens]
    ax.barh(range(len(tokens))[::-1], probs, color="tab:blue")
    ax.set_yticks(range(len(tokens))[::-1], labels, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(title)
    for y, p in zip(range(len(tokens))[::-1], probs):
        ax.text(p + 0.01, y, f"{p:.1%}", va="center", fontsize=8)
    ax.figure.tight_layout()
    return ax


def close_figure(fig) -> None:
    """Forget a figure that was only saved, so a notebook does not show it a second time."""
    plt.close(fig)


def _finish(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def plot_sweep(result: Mapping, path: str | Path | None = None):
    """The controlled experiment: gap against stories and against passes, and the scaling law."""
    summary, rows, fit, floor = result["summary"], result["rows"], result.get("fit") or {}, result["floor"]
    stories = [s["stories"] for s in summary]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.errorbar(stories, [s["gap"] for s in summary], yerr=[s["gap_sd"] for s in summary], fmt="o-",
                capsize=4, linewidth=2, label="gap at the end (mean ± sd of 3 seeds)")
    ax.scatter([r["stories"] for r in rows], [r["gap"] for r in rows], s=10, color="grey", label="each seed")
    ax.set_xscale("log")
    ax.set_xlabel("training stories (log scale)")
    ax.set_ylabel("val - train (nats per token)")
    ax.set_title("Only the data changes: the gap")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.scatter([r["passes"] for r in rows], [r["gap"] for r in rows], s=18)
    ax.set_xscale("log")
    ax.set_xlabel("passes over the training text (log scale)")
    ax.set_ylabel("gap")
    ax.set_title("The same runs: gap against passes")
    ax.axhline(0, color="black", linewidth=0.8)
    ax = axes[2]
    above = [s["best_val"] - floor for s in summary]
    ax.errorbar(stories, above, yerr=[s["best_val_sd"] for s in summary], fmt="o", capsize=4,
                label="best val - floor (mean ± sd)")
    if fit:
        xs = [min(stories), max(stories) * 3]
        ax.plot(xs, [fit["B"] * x ** -fit["beta"] for x in xs], "--",
                label=f"fit: {fit['B']:.2f} · D^-{fit['beta']:.2f} (β sd {fit['beta_sd']:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training stories D (log scale)")
    ax.set_ylabel("nats above the entropy floor (log)")
    ax.set_title("A data scaling law with a known floor")
    ax.legend(fontsize=8)
    for a in axes:
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _finish(fig, path)


def plot_val_curves(histories: Mapping[str, object], floor: float | None = None, title: str = "",
                    path: str | Path | None = None):
    """Validation curves of several runs on one axes (e.g. the remedies for overfitting)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, history in histories.items():
        line, = ax.plot(history.iters, history.val_loss, label=name, linewidth=2)
        best = history.best
        ax.plot([best["iter"]], [best["val_loss"]], marker="v", color=line.get_color(), markersize=8)
    if floor is not None:
        ax.axhline(floor, label=f"entropy floor {floor:.2f}", **FLOOR_STYLE)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (nats per token)")
    ax.set_title(title or "Validation loss (▼ = lowest point of each run)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)
