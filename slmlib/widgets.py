"""ipywidgets front ends: the generation playground and the token-surprise view of lesson 09.

Every control is an attribute, so tests drive it without a browser:
`pg.prompt.value = "Once"; pg.generate_button.click(); pg.text.value`.
Executed notebooks (papermill) keep only a text stand-in for widgets, so `show()` also
leaves a static snapshot (a generated sample and the probability chart) under the widget.
"""
from __future__ import annotations

import html
import io
import warnings
from pathlib import Path

import ipywidgets as W
import matplotlib.pyplot as plt

from .checkpoint import CheckpointError, load_model, read_index
from .errors import CourseError
from .generation import generate_text, next_token_table
from .paths import MODELS_DIR
from .plots import plot_next_token_probs
from .surprise import TextSurprise, score_text

LEVEL_ORDER = ("ultra_tiny", "tiny", "small", "medium", "large")


def saved_models(models_dir: str | Path = MODELS_DIR) -> dict[str, Path]:
    """Label -> checkpoint path for every finished model in the folder, smallest level first.

    The levels' own models come first under their plain names; experiments (other settings,
    models/experiments/) are labelled with what they changed, so one never passes for the other.
    """
    models_dir = Path(models_dir)
    entries = read_index(models_dir)["models"].values()
    rank = {name: i for i, name in enumerate(LEVEL_ORDER)}
    own, experiments = {}, {}
    for e in sorted(entries, key=lambda e: (rank.get(e["level"], 99), e["file"])):
        if not (models_dir / e["file"]).is_file():
            continue
        changed = e.get("settings") or {}
        if not changed and "/" not in e["file"]:
            own[f"{e['level']} ({e['stories']} stories)"] = models_dir / e["file"]
        else:
            what = ", ".join(f"{k}={v}" for k, v in changed.items()) or Path(e["file"]).stem
            experiments[f"{e['level']} experiment ({what})"] = models_dir / e["file"]
    return {**own, **experiments}


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


class _ModelChoice:
    """The saved models, a dropdown to pick one, and each picked model loaded once."""

    def _pick_models(self, models_dir: str | Path, default_index: int, style: dict) -> None:
        self.models = saved_models(models_dir)
        if not self.models:
            raise CheckpointError(
                f"no trained models in {models_dir}. Run lessons 03-07 first "
                "(or `python -m slmlib train --level all`), then run this cell again.")
        self._cache: dict[Path, tuple] = {}
        self.model_picker = W.Dropdown(options=list(self.models), value=list(self.models)[default_index],
                                       description="Model", style=style, layout=W.Layout(width="520px"))

    def _model(self):
        path = self.models[self.model_picker.value]
        if path not in self._cache:
            self._cache[path] = load_model(path)
        return self._cache[path]


class GenerationPlayground(_ModelChoice):
    """Pick a model, type a prompt, set temperature / top-k / length / seed, press Generate."""

    def __init__(self, models_dir: str | Path = MODELS_DIR, prompt: str = "Once upon a time"):
        style = {"description_width": "110px"}
        wide = W.Layout(width="520px")
        self._pick_models(models_dir, -1, style)
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
        self.text = W.HTML(value="<i>Press Generate.</i>", layout=W.Layout(width="720px"))
        self.chart = W.Image(format="png", layout=W.Layout(width="560px"))
        self.generate_button.on_click(lambda _: self.generate())
        self.probs_button.on_click(lambda _: self.show_probabilities())
        self.widget = W.VBox([
            W.HTML("<b>Generation playground</b>"), self.model_picker, self.prompt, self.temperature,
            self.top_k, self.max_tokens, self.seed, W.HBox([self.generate_button, self.probs_button]),
            self.text, self.chart])

    def _message(self, text: str, color: str = "#b00020") -> None:
        self.text.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def generate(self) -> str | None:
        """Generate with the current settings; the result (or the problem) shows in `text`."""
        try:
            model, info = self._model()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = generate_text(model, info["vocab"], self.prompt.value, self.max_tokens.value,
                                    self.temperature.value, self.top_k.value or None, self.seed.value)
        except CourseError as e:  # the user can fix it: say how; a bug keeps its traceback
            self._message(str(e))
            return None
        note = "".join(f"<div style='color:#8a6d00'>note: {html.escape(str(w.message))}</div>" for w in caught)
        prompt = self.prompt.value
        self.chart.value = b""  # the old chart belonged to the old prompt
        self.text.value = (f"<div style='font-family:monospace;white-space:pre-wrap'><b>{html.escape(prompt)}</b>"
                           f"{html.escape(out[len(prompt):])}</div>{note}")
        return out

    def show_probabilities(self, k: int = 10) -> list[tuple[str, float]] | None:
        """Bar chart of the k most likely next tokens after the prompt."""
        try:
            model, info = self._model()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = next_token_table(model, info["vocab"], self.prompt.value, k,
                                         max(self.temperature.value, 1e-3))
        except CourseError as e:  # the user can fix it: say how; a bug keeps its traceback
            self._message(str(e))
            return None
        fig, ax = plt.subplots(figsize=(6, 0.35 * k + 1))
        plot_next_token_probs([t for t, _ in table], [p for _, p in table],
                              f"{self.model_picker.value}: after {self.prompt.value!r}", ax=ax)
        self.chart.value = figure_png(fig)
        return table

    def show(self) -> None:
        """Display the widget, plus a static snapshot that survives in executed notebooks."""
        from IPython.display import Image, Markdown, display

        display(self.widget)
        sample = self.generate()
        table = self.show_probabilities()
        if sample is not None and table is not None:
            display(Markdown(f"**Snapshot** ({self.model_picker.value}, temperature "
                             f"{self.temperature.value}, seed {self.seed.value}):\n\n> {sample}"))
            display(Image(self.chart.value))

    def _ipython_display_(self) -> None:
        self.show()


def generation_playground(models_dir: str | Path = MODELS_DIR, prompt: str = "Once upon a time") -> GenerationPlayground:
    """The lesson-09 playground (display it by leaving it as the last line of a cell)."""
    return GenerationPlayground(models_dir, prompt)


class SurpriseView(_ModelChoice):
    """Pick a model, type a text, press Score: every token coloured by how surprised the model is.

    Hover a token for its loss and the model's top guesses; click it to keep them open.
    `view.text.value = "..."; view.score_button.click(); view.output.value` drives it from Python.
    """

    def __init__(self, models_dir: str | Path = MODELS_DIR, text: str = "Once upon a time, there was a little dog."):
        style = {"description_width": "110px"}
        self._pick_models(models_dir, 0, style)
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
        """Display the widget, plus a static copy of its view that survives in executed notebooks."""
        from IPython.display import HTML, display

        display(self.widget)
        if self.score() is not None:
            display(HTML(self.last.to_html()))

    def _ipython_display_(self) -> None:
        self.show()


def surprise_view(models_dir: str | Path = MODELS_DIR, text: str = "Once upon a time, there was a little dog.") -> SurpriseView:
    """The lesson-09 token-surprise widget (display it by leaving it as the last line of a cell)."""
    return SurpriseView(models_dir, text)
