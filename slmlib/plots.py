"""Figures for the lessons: loss curves, the gap against data size, next-token bars."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt

TRAIN_STYLE = {"linestyle": "-", "linewidth": 2}
VAL_STYLE = {"linestyle": "--", "linewidth": 2}
FLOOR_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1.5}


REF_LABELS = {"uniform": "uniform (ln V)", "unigram": "unigram counts", "bigram": "bigram counts"}


def compact_png(fig) -> bytes:
    """The figure as the notebook shows it, in a PNG of 256 colours: a line plot looks the same and takes
    a third of the bytes (lesson 08's six-panel ladder: 113 KB -> 39 KB), so executed lessons stay small."""
    from io import BytesIO

    from PIL import Image  # matplotlib's own dependency

    drawn = BytesIO()
    fig.savefig(drawn, format="png", bbox_inches="tight")  # as the notebook's inline backend draws it
    drawn.seek(0)
    image = Image.open(drawn).convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    out = BytesIO()
    flat.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="png", optimize=True)
    return out.getvalue()


def show_compact_figures() -> None:
    """In a notebook, show every matplotlib figure as compact_png does (elsewhere nothing changes)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    from matplotlib.figure import Figure

    if "inline" in plt.get_backend():  # it registers its own PNG formatter when first imported: let it, then ours
        import matplotlib_inline.backend_inline  # noqa: F401
    shell.display_formatter.formatters["image/png"].for_type(Figure, compact_png)


show_compact_figures()  # lessons import this module before they draw


def draw_references(ax, refs: Mapping[str, float] | None, floor: float | None = None) -> None:
    """Horizontal reference lines: what count models score on the same windows, and the floor.

    A loss means little alone; between "knows nothing" (uniform) and "cannot do better" (the
    floor), the unigram and bigram count models say what the simplest statistics already get.
    """
    refs = dict(refs or {})
    floor = refs.pop("floor", floor)
    for key, label in REF_LABELS.items():
        if key in refs:
            ax.axhline(refs[key], color="tab:grey", linestyle=(0, (4, 3)), linewidth=0.9, alpha=0.7)
            below = key == "unigram"  # uniform's line is close above it: their labels go on either side
            ax.annotate(f"{label} {refs[key]:.2f}", (1, refs[key]), xycoords=("axes fraction", "data"),
                        xytext=(-3, -2 if below else 2), textcoords="offset points", ha="right",
                        va="top" if below else "bottom", fontsize=7,
                        color="dimgrey", annotation_clip=True)  # no label for a line above the y-range
    if floor is not None:
        ax.axhline(floor, label=f"entropy floor {floor:.2f}", **FLOOR_STYLE)


def log_loss_axis(ax, low: float, high: float) -> None:
    """A log y-axis with plain-number ticks: big early losses and small late gaps both stay visible."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.set_ylim(low, high)
    steps = (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 4, 5, 6, 8)
    if high / low < 4:  # a narrow range: finer ticks, so a difference of a few tenths can be read off
        steps = sorted(steps + (1.25, 1.75, 2.5, 3.5, 4.5))
    ticks = [t for t in steps if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 3.5, not 3.50 or 3.5x10^0
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_history(history, floor: float | None = None, ax=None, title: str | None = None, color=None,
                 refs: Mapping[str, float] | None = None):
    """Train and val loss against training steps for one run, with the reference lines."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    line, = ax.plot(history.iters, history.train_loss, label="train", color=color, **TRAIN_STYLE)
    ax.plot(history.iters, history.val_loss, label="val (unseen stories)", color=line.get_color()
            if color else None, **VAL_STYLE)
    best = getattr(history, "best", None)
    if best and history.records and best["iter"] < history.records[-1]["iter"]:
        ax.plot([best["iter"]], [best["val_loss"]], marker="v", markersize=9, color="black", linestyle="none",
                label=f"best val {best['val_loss']:.2f} (step {best['iter']})")
    draw_references(ax, refs, floor)
    losses = history.train_loss + history.val_loss + [v for v in (refs or {}).values()] + ([floor] if floor else [])
    if losses:
        log_loss_axis(ax, 0.85 * min(losses), 1.2 * max(losses))
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats per token, log scale)")
    if title is None and history.config:
        stories = history.config.get("stories", "?")
        title = f"{history.config.get('name', '')}: {stories:,} stories" if isinstance(stories, int) else \
            f"{history.config.get('name', '')}: {stories} stories"
    if history.gap is not None:  # the last point's gap: the same number the summary prints
        title = f"{title}  (gap {history.gap:+.3f})"
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    return ax


class LiveLossPlot:
    """Callback for `train(..., callbacks=[LiveLossPlot()])`: a plot that redraws in place.

    The last drawing stays in the notebook as an ordinary image, so papermill's executed
    copy shows the final curves too.
    """

    def __init__(self, floor: float | None = None, title: str | None = None,
                 refs: Mapping[str, float] | None = None):
        self.floor, self.title, self.refs, self.handle = floor, title, refs, None

    def __call__(self, history) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:  # plain Python: nothing to draw on
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        plot_history(history, self.floor, ax=ax, title=self.title, refs=self.refs)
        steps = history.config.get("max_iters")
        if steps:  # the run's whole length from the first frame, so the axis never jumps as points arrive
            ax.set_xlim(0, steps * 1.02)
        fig.tight_layout()
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def plot_ladder_curves(histories: Mapping[str, object], floor: float | None = None,
                       path: str | Path | None = None, refs: Mapping[str, Mapping[str, float]] | None = None):
    """One panel per level (two rows, each panel its own log y-range), train solid, val dashed.

    refs: per level, the reference lines (metrics.reference_losses). Each panel's range follows
    its own curves, so a gap of 0.03 nats at the large level is as visible as 4 at the smallest.
    """
    n = len(histories)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.7 * cols, 3.1 * rows), squeeze=False, dpi=WIDE_DPI)
    for ax, (name, history) in zip(axes.flat, histories.items()):
        plot_history(history, floor, ax=ax, refs=(refs or {}).get(name),
                     title=f"{name}: {history.config.get('stories'):,} stories")
        ax.title.set_fontsize(10)
        if ax is not axes.flat[0]:
            ax.get_legend().remove()
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("The ladder: model, data and steps grow together (log scale; grey: reference models)",
                 fontsize=11)
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


# Figures of two or more panels are drawn at 80 dpi: about 900 pixels wide, the width of a notebook
# cell, so nothing is lost on screen and an executed lesson stays small (a 6-panel figure at 100 dpi
# was 250 KB of lesson 08). Saved files in outputs/ get a little more.
WIDE_DPI, SAVED_DPI = 80, 100


def _finish(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=SAVED_DPI)
    return fig


def plot_sweep(result: Mapping, path: str | Path | None = None):
    """The controlled experiment: best validation loss and where it came, and the law with its test."""
    summary, rows, fit, floor = result["summary"], result["rows"], result.get("fit") or {}, result["floor"]
    stories = [s["stories"] for s in summary]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.1), dpi=WIDE_DPI)
    ax = axes[0]
    ax.errorbar(stories, [s["best_val"] for s in summary], yerr=[s["best_val_sd"] for s in summary], fmt="o-",
                capsize=4, linewidth=2, label="best val (mean ± sd over seeds)")
    ax.errorbar(stories, [s["final_train"] for s in summary], yerr=[s["final_train_sd"] for s in summary],
                fmt="s--", capsize=4, linewidth=1.5, label="train loss at the end")
    ax.scatter([r["stories"] for r in rows], [r["best_val"] for r in rows], s=10, color="grey", zorder=3,
               label="each seed")
    for s in summary:
        if s["turned_up"]:
            ax.annotate(f"turned up\n({s['turned_up']}/{s['seeds']} seeds)", (s["stories"], s["best_val"]),
                        textcoords="offset points", xytext=(8, -4), fontsize=7, va="top")  # below-right: clear of the title
    ax.axhline(floor, label=f"entropy floor {floor:.2f}", **FLOOR_STYLE)
    ax.set_xscale("log")
    ax.set_xlabel("training stories (log scale)")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("Only the data changes: one model, one recipe")
    ax.legend(fontsize=8)
    ax = axes[1]
    above = [s["best_val"] - floor for s in summary]
    ax.errorbar(stories, above, yerr=[s["best_val_sd"] for s in summary], fmt="o", capsize=4,
                label="best val − floor (mean ± sd)")
    if fit:  # the curve over the fitted sizes only: no line past the data
        lo, hi = min(fit["fitted_on"]), max(fit["fitted_on"])
        xs = [lo * (hi / lo) ** (k / 60) for k in range(61)]
        limit = fit.get("A", 0.0)
        ax.plot(xs, [limit + fit["B"] * x ** -fit["beta"] for x in xs], "-", color="tab:orange",
                label=f"fit: {limit:.3f} + {fit['B']:.2f} · D^−{fit['beta']:.3f}  (R² {fit['r2']:.3f})")
        if limit > 0:
            ax.axhline(limit, color="tab:orange", linestyle=":", linewidth=1,
                       label=f"the recipe's own limit A = {limit:.3f} (steps, model size)")
    pred = result.get("prediction")
    if pred:
        ax.errorbar([pred["stories"]], [pred["measured"] - floor], yerr=[pred["measured_sd"]], fmt="D",
                    color="tab:red", capsize=4,
                    label=f"held out, {pred['stories']:,} stories: measured (error {pred['error']:+.3f})")
        ax.plot([pred["stories"]], [pred["predicted"] - floor], "x", color="tab:red", markersize=10,
                label="… and the fit's prediction")
    lows = [a - s["best_val_sd"] for a, s in zip(above, summary)] + ([pred["measured"] - floor] if pred else [])
    highs = [a + s["best_val_sd"] for a, s in zip(above, summary)]
    log_loss_axis(ax, 0.8 * max(min(lows), 0.05), 1.25 * max(highs))
    ax.set_xscale("log")
    ax.set_xlabel("training stories D (log scale)")
    ax.set_ylabel("nats per token above the floor (log scale)")
    ax.set_title("A data scaling law with a known floor, and its test")
    ax.legend(fontsize=8)
    for a in axes:
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _finish(fig, path)


def plot_remedies(histories: Mapping[str, Sequence], floor: float | None = None,
                  refs: Mapping[str, float] | None = None, title: str = "", path: str | Path | None = None):
    """Each remedy's runs (one line per seed): training loss left, validation loss right.

    Side by side, so a remedy that only makes the training loss worse is seen as such.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.1), dpi=WIDE_DPI)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    losses, vals = [], []
    for (name, runs), color in zip(histories.items(), colors):
        for i, history in enumerate(runs):
            label = name if i == 0 else None
            axes[0].plot(history.iters, history.train_loss, color=color, linewidth=1.5, alpha=0.8, label=label)
            axes[1].plot(history.iters, history.val_loss, color=color, linewidth=1.5, alpha=0.8, label=label)
            best = history.best
            axes[1].plot([best["iter"]], [best["val_loss"]], marker="v", color=color, markersize=7)
            losses += history.train_loss[2:] + history.val_loss[2:]  # from the third point: past the start
            vals += history.val_loss[2:]
    for ax, what in zip(axes, ("training", "validation")):
        draw_references(ax, refs, floor)
        ax.set_xlabel("training step")
        ax.set_title(f"{what} loss (▼ = lowest of each run)" if what == "validation" else f"{what} loss")
        ax.grid(alpha=0.3, which="both")
    ref_values = [v for k, v in (refs or {}).items() if k in ("bigram", "floor")] + ([floor] if floor else [])
    log_loss_axis(axes[0], 0.85 * min(losses + ref_values), 1.1 * max(losses + ref_values))
    # The validation panel zooms on its own curves (and the bigram line): the remedies' differences
    # are tenths of a nat, which the training panel's range down to the floor would flatten.
    near = vals + [v for k, v in (refs or {}).items() if k == "bigram"]
    log_loss_axis(axes[1], 0.92 * min(near), 1.08 * max(near))
    for ax in axes:
        ax.set_ylabel("loss (nats per token, log scale)")
    axes[1].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _finish(fig, path)
