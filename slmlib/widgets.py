"""ipywidgets front ends: the generation playground and the token-surprise view of lesson 09.

Every control is an attribute, so tests drive it without a browser:
`pg.prompt.value = "Once"; pg.generate_button.click(); pg.text.value`.
Executed notebooks (papermill) keep no widget state, so a lesson shows what must survive there
(samples, the coloured surprise view) with its own print or display, not with a copy under the widget.
"""
from __future__ import annotations

import html
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
import matplotlib.pyplot as plt

from . import paths
from .checkpoint import CheckpointError, load_model, read_index
from .data import load_stats
from .errors import CourseError
from .generation import generate_text, next_token_table
from .plots import plot_next_token_probs
from .surprise import TextSurprise, score_text

LEVEL_ORDER = ("ultra_tiny", "tiny", "small", "medium", "large")
# Where the stories differ, so the next-token chart shows a model choosing (after "Once upon a
# time" every story goes on with ",": one bar at 100%).
DEFAULT_PROMPT = "Once upon a time, there was a little"


@dataclass(frozen=True)
class SavedModel:
    """One finished checkpoint as the pickers list it."""

    label: str  # what the dropdown shows: level, stories or what changed, validation loss
    path: Path
    level_rank: int  # LEVEL_ORDER's position; 99 for anything else
    own: bool  # the level's own model (its default settings), not an experiment


def _uniform_loss() -> float | None:
    """ln V, the loss of a uniform guess over the course's compact vocabulary (None if unknown)."""
    try:
        return math.log(load_stats()["compact_vocab_size"])
    except (CourseError, OSError, KeyError, ValueError):
        return None


def model_list(models_dir: str | Path | None = None) -> list[SavedModel]:
    """Every finished model in the folder: the levels' own models first, smallest level first, then
    experiments (other settings, models/experiments/), labelled with what they changed, so one never
    passes for the other. Each label ends with the model's validation loss against ln V, the loss of a
    uniform guess, so a barely trained model shows as one."""
    models_dir = paths.models_dir(models_dir)
    rank = {name: i for i, name in enumerate(LEVEL_ORDER)}
    uniform = _uniform_loss()
    found = []
    for e in read_index(models_dir)["models"].values():
        if not (models_dir / e["file"]).is_file():
            continue
        changed = e.get("settings") or {}
        own = not changed and "/" not in e["file"]
        if own:
            name = f"{e['level']} ({e['stories']:,} stories)"
        else:
            what = ", ".join(f"{k}={v}" for k, v in changed.items()) or Path(e["file"]).stem
            name = f"{e['level']} experiment ({what})"
        val = e.get("val_loss")  # of the final weights, the ones load_model gives (not best_val's)
        if isinstance(val, (int, float)):
            name += f" · val loss {val:.2f}" + (f" (uniform guess {uniform:.2f})" if uniform and "corpus" not in changed else "")
        found.append(SavedModel(name, models_dir / e["file"], rank.get(e["level"], 99), own))
    return sorted(found, key=lambda m: (not m.own, m.level_rank, m.label))


def saved_models(models_dir: str | Path | None = None) -> dict[str, Path]:
    """Label -> checkpoint path, in model_list's order."""
    return {m.label: m.path for m in model_list(models_dir)}


def largest_model(models: list[SavedModel]) -> SavedModel:
    """The largest level's own model; only when no level has its own model, the largest experiment."""
    pool = [m for m in models if m.own] or models
    return max(pool, key=lambda m: m.level_rank if m.level_rank != 99 else -1)


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


class _ModelChoice:
    """The saved models, a dropdown to pick one, and each picked model loaded once."""

    def _pick_models(self, models_dir: str | Path | None, largest: bool, style: dict) -> None:
        """largest: start on the largest level's own model (else the smallest level's)."""
        models_dir = paths.models_dir(models_dir)
        found = model_list(models_dir)
        if not found:
            raise CheckpointError(
                f"no trained models in {models_dir}. Run lessons 03-07 first "
                "(or `python -m slmlib train --level all`), then run this cell again.")
        self.models = {m.label: m.path for m in found}
        self._cache: dict[Path, tuple] = {}
        self.model_picker = W.Dropdown(options=list(self.models),
                                       value=largest_model(found).label if largest else found[0].label,
                                       description="Model", style=style, layout=W.Layout(width="720px"))

    def _model(self):
        path = self.models[self.model_picker.value]
        if path not in self._cache:
            self._cache[path] = load_model(path)
        return self._cache[path]


class GenerationPlayground(_ModelChoice):
    """Pick a model, type a prompt, set temperature / top-k / length / seed, press Generate."""

    def __init__(self, models_dir: str | Path | None = None, prompt: str = DEFAULT_PROMPT):
        style = {"description_width": "110px"}
        wide = W.Layout(width="520px")
        self._pick_models(models_dir, True, style)
        self.prompt = W.Text(value=prompt, description="Prompt", style=style, layout=wide,
                             placeholder="Type the start of a story")
        self.temperature = W.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="Temperature",
                                         style=style, layout=wide, readout_format=".2f")
        self.top_k = W.IntSlider(value=40, min=0, max=200, description="Top-k (0=all)", style=style, layout=wide)
        self.max_tokens = W.IntSlider(value=80, min=5, max=300, step=5, description="Max tokens",
                                      style=style, layout=wide)
        self.seed = W.IntText(value=0, description="Seed", style=style, layout=W.Layout(width="220px"))
        self.generate_button = W.Button(description="Generate", button_style="primary", icon="play")
        self.probs_button = W.Button(description="Next-token probabilities", icon="bar-chart",
                                     layout=W.Layout(width="auto"))
        self.status = W.HTML(value="")  # "Generating ..." while the kernel works
        self.text = W.HTML(value="<i>Press Generate.</i>", layout=W.Layout(width="720px"))
        self.chart = W.Image(format="png", layout=W.Layout(width="560px", display="none"))  # hidden until drawn
        for w, name in ((self.status, "slm-status"), (self.text, "slm-sample"), (self.chart, "slm-chart")):
            w.add_class(name)
        self.generate_button.on_click(lambda _: self.generate())
        self.probs_button.on_click(lambda _: self.show_probabilities())
        self.widget = W.VBox([
            W.HTML("<b>Generation playground</b>"), self.model_picker, self.prompt, self.temperature,
            self.top_k, self.max_tokens, self.seed, W.HBox([self.generate_button, self.probs_button]),
            self.status, self.text, self.chart])

    def _message(self, text: str, color: str = "#b00020") -> None:
        self.text.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _settings(self) -> str:
        """What produces a sample, as the kernel received it."""
        top_k = self.top_k.value or "all"
        greedy = " (greedy: always the likeliest token)" if self.temperature.value == 0 else ""
        return (f"{self.model_picker.value}; temperature {self.temperature.value:.2f}{greedy}, "
                f"top-k {top_k}, seed {self.seed.value}")

    def _busy(self, what: str | None) -> None:
        """Show that the kernel is working (buttons off, a status line), or that it is done."""
        self.generate_button.disabled = self.probs_button.disabled = what is not None
        self.status.value = "" if what is None else f"<i style='color:#555'>{html.escape(what)}</i>"

    def generate(self) -> str | None:
        """Generate with the current settings; the result (or the problem) shows in `text`."""
        settings = self._settings()
        self._busy(f"Generating {self.max_tokens.value} tokens at most with {settings} ...")
        try:
            model, info = self._model()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = generate_text(model, info["vocab"], self.prompt.value, self.max_tokens.value,
                                    self.temperature.value, self.top_k.value or None, self.seed.value)
        except CourseError as e:  # the user can fix it: say how; a bug keeps its traceback
            self._message(str(e))
            return None
        finally:
            self._busy(None)
        note = "".join(f"<div style='color:#8a6d00'>note: {html.escape(str(w.message))}</div>" for w in caught)
        prompt = self.prompt.value
        self.chart.layout.display = "none"  # the old chart belonged to the old prompt
        # line-height: the widget's own is the height of a control, which double-spaces a paragraph
        self.text.value = (f"<div style='font-family:monospace;white-space:pre-wrap;line-height:1.5'>"
                           f"<b>{html.escape(prompt)}</b>{html.escape(out[len(prompt):])}</div>"
                           f"<div class='slm-settings' style='color:#555;font-size:12px;line-height:1.5'>"
                           f"sampled from {html.escape(settings)}</div>{note}")
        return out

    def show_probabilities(self, k: int = 10) -> list[tuple[str, float]] | None:
        """Bar chart of the k most likely next tokens after the prompt, at the slider's temperature
        (the distribution Generate samples from, before top-k; at temperature 1 the model's own)."""
        temperature = self.temperature.value
        self._busy("Computing the next-token probabilities ...")
        try:
            model, info = self._model()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = next_token_table(model, info["vocab"], self.prompt.value, k, max(temperature, 1e-3))
        except CourseError as e:  # the user can fix it: say how; a bug keeps its traceback
            self._message(str(e))
            return None
        finally:
            self._busy(None)
        fig, ax = plt.subplots(figsize=(6, 0.35 * k + 1.6))
        prompt = self.prompt.value if len(self.prompt.value) <= 45 else "..." + self.prompt.value[-42:]
        scaled = "the model's own (temperature 1)" if temperature == 1 else f"at temperature {temperature:.2f}"
        plot_next_token_probs([t for t, _ in table], [p for _, p in table],
                              f"{self.model_picker.value.split(' · ')[0]}\nnext token after {prompt!r}\n"
                              f"probabilities {scaled}", ax=ax)
        fig.tight_layout()
        self.chart.value = figure_png(fig)
        self.chart.layout.display = None
        return table

    def show(self) -> None:
        """Display the widget (executed notebooks keep no widget state: the lesson prints samples too)."""
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.show()


def generation_playground(models_dir: str | Path | None = None, prompt: str = DEFAULT_PROMPT) -> GenerationPlayground:
    """The lesson-09 playground (display it by leaving it as the last line of a cell)."""
    return GenerationPlayground(models_dir, prompt)


class SurpriseView(_ModelChoice):
    """Pick a model, type a text, press Score: every token coloured by how surprised the model is.

    Hover a token for its loss; click it for the model's top guesses there.
    `view.text.value = "..."; view.score_button.click(); view.output.value` drives it from Python.
    """

    def __init__(self, models_dir: str | Path | None = None, text: str = "Once upon a time, there was a little dog."):
        style = {"description_width": "110px"}
        self._pick_models(models_dir, False, style)
        self.text = W.Textarea(value=text, description="Text", style=style, placeholder="Type or paste a text",
                               layout=W.Layout(width="720px", height="90px"))
        self.score_button = W.Button(description="Score", button_style="primary", icon="search")
        self.output = W.HTML(value="<i>Press Score.</i>", layout=W.Layout(width="100%", overflow="visible"))
        self.last: TextSurprise | None = None
        self.score_button.on_click(lambda _: self.score())
        self.model_picker.observe(lambda _: self.score(), names="value")  # a new model: score again
        self.widget = W.VBox([W.HTML("<b>Token surprise</b>"), self.model_picker, self.text,
                              self.score_button, self.output], layout=W.Layout(overflow="visible"))

    def score(self) -> TextSurprise | None:
        """Score the text under the chosen model; the coloured text (or the problem) shows in `output`."""
        try:
            model, info = self._model()
            self.last = score_text(model, info["vocab"], self.text.value, label=self.model_picker.value)
        except CourseError as e:  # the user can fix it: say how; a bug keeps its traceback
            self.last = None
            self.output.value = f"<span style='color:#b00020'>{html.escape(str(e))}</span>"
            return None
        self.output.value = self.last.to_html()
        return self.last

    def show(self) -> None:
        """Display the widget, scored once (executed notebooks keep no widget state: the lesson
        displays its own scored texts)."""
        from IPython.display import display

        display(self.widget)
        self.score()

    def _ipython_display_(self) -> None:
        self.show()


def surprise_view(models_dir: str | Path | None = None, text: str = "Once upon a time, there was a little dog.") -> SurpriseView:
    """The lesson-09 token-surprise widget (display it by leaving it as the last line of a cell)."""
    return SurpriseView(models_dir, text)
