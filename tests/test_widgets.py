"""The playground's Python side, driven like a student would, without a browser."""
import pytest

from slmlib.checkpoint import CheckpointError
from slmlib.data import load_data
from slmlib.train import train
from slmlib.widgets import GenerationPlayground, saved_models


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


def test_probability_button_draws_a_chart(models_dir):
    pg = GenerationPlayground(models_dir)
    assert pg.chart.value == b""
    pg.probs_button.click()
    assert pg.chart.value[:8] == b"\x89PNG\r\n\x1a\n"


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
