"""The playground's Python side, driven like a student would, without a browser."""
import pytest
import torch

from slmlib.checkpoint import CheckpointError
from slmlib.data import load_data
from slmlib.train import train
import slmlib.widgets as widgets
from slmlib.widgets import GenerationPlayground, SurpriseView, saved_models


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from slmlib.config import LevelConfig

    cfg = LevelConfig("tiny", 2, stories=20, n_layer=1, n_head=2, n_embd=16, max_iters=20, batch_size=4,
                      block_size=32, eval_interval=10, eval_windows=8)
    folder = tmp_path_factory.mktemp("models")
    train(cfg, data=load_data(cfg), out=folder / "model_tiny_20_stories.pt", progress=False)
    return folder


def test_generate_button_writes_text_starting_with_the_prompt(models_dir):
    pg = GenerationPlayground(models_dir)
    labels = list(saved_models(models_dir))  # other settings than the level's: labelled as such
    assert len(labels) == 1 and labels[0].startswith("tiny experiment (") and "stories=20" in labels[0]
    pg.prompt.value = "One day, Tom"
    pg.max_tokens.value = 10
    pg.generate_button.click()
    assert "One day, Tom" in pg.text.value and "color:#b00020" not in pg.text.value
    first = pg.text.value
    pg.seed.value = 5
    pg.temperature.value = 1.5
    pg.generate_button.click()
    assert pg.text.value != first


def test_each_sample_says_what_produced_it_and_the_buttons_come_back(models_dir):
    pg = GenerationPlayground(models_dir)
    pg.max_tokens.value = 5
    seen = []  # the state the browser is sent while the kernel generates
    pg.status.observe(lambda c: seen.append((c["new"], pg.generate_button.disabled)), names="value")
    pg.temperature.value, pg.top_k.value, pg.seed.value = 0.0, 0, 7
    pg.generate_button.click()
    assert seen and "Generating" in seen[0][0] and seen[0][1], "no sign of work while generating"
    assert pg.status.value == "" and not pg.generate_button.disabled and not pg.probs_button.disabled
    assert (f"{pg.model_picker.value}; temperature 0.00 (greedy: always the likeliest token), "
            "top-k all, seed 7") in pg.text.value
    assert "line-height:1.5" in pg.text.value  # the widget's own line height double-spaces a paragraph


def test_the_kernel_samples_at_the_sliders_temperature_and_zero_is_greedy(models_dir, monkeypatch):
    """A temperature lost on its way to the sampler reads as 'temperature does nothing': fail, never warn."""
    received = []
    real = widgets.generate_text
    monkeypatch.setattr(widgets, "generate_text", lambda *a: received.append(a[4]) or real(*a))
    pg = GenerationPlayground(models_dir)
    pg.max_tokens.value, pg.top_k.value = 12, 0
    pg.temperature.value = 0.0
    greedy = set()
    for seed in (0, 1, 2):
        pg.seed.value = seed
        greedy.add(pg.generate())
    assert received == [0.0] * 3 and len(greedy) == 1, "at temperature 0 the seed must not matter (greedy)"
    model, info = pg._model()
    ids = info["vocab"].encode(pg.prompt.value)
    for _ in range(12):  # the likeliest token every time, by hand
        nxt = int(model(torch.tensor([ids[-model.block_size:]]))[0][0, -1].argmax())
        if nxt == info["vocab"].eot_id:
            break
        ids.append(nxt)
    assert greedy == {info["vocab"].decode(ids)}
    pg.temperature.value = 1.5
    sampled = set()
    for seed in (0, 1, 2):
        pg.seed.value = seed
        sampled.add(pg.generate())
    assert received[3:] == [1.5] * 3 and sampled - greedy, "temperature 1.5 gave only the greedy text"


def test_live_loss_plot_spans_the_whole_run_from_the_first_frame(monkeypatch):
    """Before the second evaluation the x-axis was -0.04..0.04, and it rescaled at every redraw."""
    import IPython
    import IPython.display
    import matplotlib.pyplot as plt

    from slmlib.history import History
    from slmlib.plots import LiveLossPlot

    plt.close(plt.figure())  # pick the backend before IPython is faked
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda fig, display_id=None: shown.append(fig.axes[0].get_xlim()))
    history = History(config={"name": "tiny", "stories": 200, "max_iters": 1200},
                      records=[{"iter": 0, "train_loss": 7.6, "val_loss": 7.6}])
    LiveLossPlot(refs={"uniform": 7.67, "floor": 0.63})(history)
    low, high = shown[0]
    assert low == 0 and 1200 <= high < 1300


def test_probability_button_draws_a_chart_and_generate_hides_it_without_a_broken_image(models_dir):
    pg = GenerationPlayground(models_dir)
    assert pg.chart.layout.display == "none"  # nothing to show yet: hidden, not an empty image
    pg.probs_button.click()
    assert pg.chart.value[:8] == b"\x89PNG\r\n\x1a\n" and pg.chart.layout.display is None
    pg.max_tokens.value = 5
    pg.generate_button.click()  # the chart belonged to the old prompt: hidden, never set to empty bytes
    assert pg.chart.layout.display == "none" and pg.chart.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_showing_the_playground_leaves_no_static_copy_under_it(models_dir, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    pg = GenerationPlayground(models_dir)
    pg.show()
    assert shown == [pg.widget]
    view = SurpriseView(models_dir)
    shown.clear()
    view.show()
    assert shown == [view.widget] and "slm-surprise" in view.output.value


def _fake_index(tmp_path, monkeypatch, entries):
    for e in entries:
        (tmp_path / e["file"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / e["file"]).write_bytes(b"")
    monkeypatch.setattr(widgets, "read_index", lambda d: {"models": {e["file"]: e for e in entries}})


def test_the_playground_opens_on_the_largest_levels_own_model_not_the_last_or_an_experiment(tmp_path, monkeypatch):
    """After the README's `train --level tiny --max-iters 100` an experiment sorts last; it is not the default."""
    _fake_index(tmp_path, monkeypatch, [
        {"file": "model_ultra_tiny_100_stories.pt", "level": "ultra_tiny", "stories": 100, "val_loss": 4.6},
        {"file": "model_small_1000_stories.pt", "level": "small", "stories": 1000, "val_loss": 2.9},
        {"file": "model_tiny_200_stories.pt", "level": "tiny", "stories": 200, "val_loss": 3.9},
        {"file": "experiments/model_large_10000_stories__max_iters=5.pt", "level": "large", "stories": 10000,
         "settings": {"max_iters": 5}, "val_loss": 7.65},
        {"file": "experiments/model_tiny_200_stories__max_iters=100.pt", "level": "tiny", "stories": 200,
         "settings": {"max_iters": 100}, "val_loss": 5.1},
    ])
    models = widgets.model_list(tmp_path)
    assert [m.path.name for m in models][:3] == ["model_ultra_tiny_100_stories.pt", "model_tiny_200_stories.pt",
                                                 "model_small_1000_stories.pt"]
    default = widgets.largest_model(models)
    assert default.path.name == "model_small_1000_stories.pt"
    assert GenerationPlayground(tmp_path).model_picker.value == default.label
    # the picker says how well each one learned, against a uniform guess (ln V)
    assert default.label.startswith("small (1,000 stories) · val loss 2.90 (uniform guess 7.67)"), default.label
    barely = next(m for m in models if "max_iters=5" in m.label)
    assert barely.label.startswith("large experiment (max_iters=5) · val loss 7.65"), barely.label
    # with no level's own model, the largest experiment
    assert widgets.largest_model([m for m in models if not m.own]).level_rank == 4


def test_empty_prompt_shows_a_message_not_a_crash(models_dir):
    pg = GenerationPlayground(models_dir)
    pg.prompt.value = "   "
    pg.generate_button.click()
    assert "prompt is empty" in pg.text.value
    pg.probs_button.click()
    assert "prompt is empty" in pg.text.value


def test_unknown_words_are_noted(models_dir):
    pg = GenerationPlayground(models_dir)
    pg.prompt.value = "The astronaut zorbled"
    pg.max_tokens.value = 5
    pg.generate_button.click()
    assert "never appear in the training stories" in pg.text.value


def test_no_models_says_which_lessons_to_run(tmp_path):
    with pytest.raises(CheckpointError, match="Run lessons 03-07 first"):
        GenerationPlayground(tmp_path)
