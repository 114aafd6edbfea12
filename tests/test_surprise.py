"""Token surprise and the hand-written stories: per-token losses, unknown tokens, the HTML, the CLI."""
import html

import pytest
import torch

from slmlib.__main__ import main
from slmlib.data import eval_windows, gpt2_stream, handwritten_path, load_stats, read_stories, split_path
from slmlib import experiments
from slmlib.surprise import (EmptyTextError, TextSurprise, TokenSurprise, handwritten_stories, score_handwritten,
                             score_ids, score_text, surprise_html, surprising_table)
from slmlib.train import evaluate_loss
from slmlib.widgets import SurpriseView

STORY = "Once upon a time, there was a little girl named Lily. She liked to play with her red ball."
NEW_WORDS = "The astronaut zorbled."  # ' astronaut' and 'bled' never occur in the course's stories


@pytest.fixture
def trained(trained_tiny):
    """The session's tiny trained model (tests/conftest.py), saved where `test` finds it:
    (config, model, vocab, checkpoint, models dir)."""
    return trained_tiny


def test_per_token_losses_average_to_the_models_loss(trained):
    _, model, vocab, _, _ = trained
    surprise = score_text(model, vocab, STORY)
    ids = [vocab.eot_id] + vocab.encode(STORY)
    assert len(surprise.tokens) == len(ids) - 1 < model.block_size  # one window: the plain forward pass
    _, loss = model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    assert surprise.mean_loss == pytest.approx(loss.item(), abs=1e-5)
    best_guess = [t for t in surprise.tokens if t.rank == 1]
    assert all(t.guesses[0][1] == pytest.approx(t.probability, rel=1e-4) for t in best_guess)


def test_a_text_longer_than_the_block_keeps_its_context(trained):
    """Past the first block every token is scored with block/2 or more tokens before it, not from scratch."""
    _, model, vocab, _, _ = trained
    ids = vocab.encode(STORY * 3)
    losses, _, _, _ = score_ids(model, vocab, ids)
    stream = torch.tensor([vocab.eot_id] + ids)
    block = model.block_size
    assert len(ids) > 2 * block and torch.isfinite(losses).all()
    first_block = model(stream[None, :block], stream[None, 1: block + 1])[1].item()
    assert losses[:block].mean().item() == pytest.approx(first_block, abs=1e-5)
    last = len(ids) - 1  # the last token, predicted from the block of tokens that end just before it
    logits, _ = model(stream[None, last + 1 - block: last + 1])
    expected = -torch.log_softmax(logits[0, -1], -1)[ids[last]].item()
    assert losses[last].item() == pytest.approx(expected, abs=1e-4)


def test_unknown_tokens_are_flagged(trained):
    _, model, vocab, _, _ = trained
    surprise = score_text(model, vocab, NEW_WORDS)
    unknown = [t.text for t in surprise.tokens if t.unknown]
    assert unknown == [" astronaut", "bled"], [(t.text, t.unknown) for t in surprise.tokens]
    assert surprise.unknown_count == 2 and surprise.unknown_share == pytest.approx(2 / len(surprise.tokens))
    assert not any(t.unknown for t in score_text(model, vocab, STORY).tokens)


def test_html_shows_every_token_its_guesses_the_mean_and_a_legend(trained):
    _, model, vocab, _, _ = trained
    surprise = score_text(model, vocab, NEW_WORDS + " A <b> tag & more", label="tiny test model")
    page = surprise.to_html()
    assert page.count("<details ") == len(surprise.tokens)
    assert f"mean {surprise.mean_loss:.3f} nats/token" in page and "tiny test model" in page
    assert "slm-legend" in page and "unknown" in page and "<script" not in page
    assert "&lt;" in page and "&amp;" in page and "<b> tag" not in page  # escaped, never run as HTML
    first = surprise.tokens[0]
    assert f"title='{first.loss:.2f} nats, guess #{first.rank}'" in page  # its numbers on hover ...
    guesses = "\n".join(html.escape(f"{g!r} {p:.0%}", quote=False) for g, p in first.guesses[:3])
    assert f"<span>{guesses}" in page  # ... and the model's top guesses on click
    assert page.count("<style>") == 1, "one style sheet per view, not a style on every token"
    assert len(page) < 3000 + 250 * len(surprise.tokens), "markup repeated for every token: keep it short"
    rows = surprising_table(surprise, 3)
    assert [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)


def test_a_perplexity_above_the_vocabulary_size_says_worse_than_a_uniform_guess_not_a_count():
    """e^22.3 = 4,904,946,879.5 'tokens to choose from' means nothing with 2,139 tokens in the vocabulary."""
    def text(loss):
        return TextSurprise([TokenSurprise("x", loss, False, 1, ())], "m", vocab_size=2139)
    assert "(perplexity 2.4);" in text(0.885).summary()
    lost = text(22.314).summary()
    assert "worse than a uniform guess" in lost and "ln 2,139 = 7.67" in lost and "4904946879" not in lost
    assert "perplexity 1,000.0" in TextSurprise([TokenSurprise("x", 6.907755, False, 1, ())]).summary()


def test_open_guesses_float_over_the_text_instead_of_pushing_it_down():
    """The browser test checks the layout itself (tests/test_browser.py: the next line stays put)."""
    page = surprise_html(TextSurprise([TokenSurprise("x", 1.0, False, 1, (("y", 0.5),))]))
    assert ".slm-text>details{vertical-align:top;position:relative}" in page
    assert ".slm-text>details>span{position:absolute;" in page
    assert ".slm-text>details[open]>summary{box-shadow" in page  # the clicked token is marked


def test_empty_text_is_refused_with_a_message(trained):
    _, model, vocab, _, _ = trained
    with pytest.raises(EmptyTextError, match="the text is empty"):
        score_text(model, vocab, "  \n ")


def test_handwritten_stories_are_many_and_none_is_a_training_story():
    stories = handwritten_stories()
    assert len(stories) >= 30 and len(set(stories)) == len(stories)
    course = "\n".join(t for s in ("train", "val", "test") for t in read_stories(split_path(s)))
    assert not [s for s in stories if s in course or s[:60] in course]
    assert load_stats()["handwritten"]["stories"] == len(stories), "run `python -m slmlib data build`"


def test_handwritten_score_is_measured_like_test_loss(trained):
    cfg, model, vocab, _, _ = trained
    result = score_handwritten(model, vocab)
    compact = vocab.from_gpt2_tensor(gpt2_stream(handwritten_stories()))
    windows = eval_windows(compact, compact.numel(), cfg.block_size)
    assert result["loss"] == pytest.approx(evaluate_loss(model, windows), abs=1e-5)
    assert result["unknown_share"] == pytest.approx(load_stats()["handwritten"]["unknown_token_share"], abs=1e-4)
    assert 0 < result["unknown_share"] < 1 and result["known_loss"] < result["loss"]
    assert str(handwritten_path()).endswith("data/handwritten_stories.txt")


def test_test_command_reports_the_handwritten_columns(trained):
    cfg, _, _, _, models = trained
    assert {"handwritten_loss", "handwritten_unknown_share"} <= set(experiments.TEST_COLUMNS)
    row, = experiments.test_models([cfg], models_dir=models, n_fresh=2, max_new_tokens=3,
                       out_dir=models.parent / "outputs")
    assert row["handwritten_loss"] > 0 and 0 < row["handwritten_unknown_share"] < 1


def test_cli_score_prints_the_mean_and_the_most_surprising_tokens(trained, capsys, tmp_path):
    _, _, _, ckpt, _ = trained
    page = tmp_path / "view.html"
    assert main(["score", "--checkpoint", str(ckpt), "--text", NEW_WORDS, "--top", "3", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "nats/token" in out and "most surprising tokens" in out and "' astronaut'" in out
    assert "<unk>" in out and "slm-legend" in page.read_text()
    story_file = tmp_path / "one_story.txt"
    story_file.write_text(f"{STORY}\n<|endoftext|>\n{STORY}\n<|endoftext|>\n")
    assert main(["score", "--checkpoint", str(ckpt), "--file", str(story_file)]) == 0
    assert "; 0 unknown to the vocabulary" in capsys.readouterr().out  # the separators add no "\n" tokens


@pytest.mark.parametrize("args, message", [
    (["--text", "   "], "the text is empty"),
    (["--file", "EMPTY"], "is empty"),
    (["--file", "/nonexistent/story.txt"], "no file at /nonexistent/story.txt"),
    ([], 'give exactly one of --text "..." or --file PATH'),
])
def test_cli_score_bad_input_is_one_line(trained, capsys, tmp_path, args, message):
    _, _, _, ckpt, _ = trained
    if "EMPTY" in args:
        (tmp_path / "empty.txt").write_text("\n")
        args = ["--file", str(tmp_path / "empty.txt")]
    assert main(["score", "--checkpoint", str(ckpt), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_surprise_widget_scores_what_the_student_types(trained):
    _, _, _, _, models = trained
    view = SurpriseView(models)
    view.text.value = NEW_WORDS
    view.score_button.click()
    assert "slm-surprise" in view.output.value and view.last.unknown_count == 2
    view.text.value = ""
    view.score_button.click()
    assert "text is empty" in view.output.value and view.last is None
