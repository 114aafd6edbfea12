import math

from slmlib.lesson import summarize, verdict
from slmlib.metrics import TrainingText, distinct_n, gap, memorization, perplexity, real_word_share, text_quality

TRAIN = ["Once upon a time, there was a girl named Lily. She loved her red ball.",
         "Tom had a big dog. The dog liked to run in the park."]


def test_memorization_finds_the_longest_copied_span():
    training = TrainingText(TRAIN, n=4)
    copied = memorization("Yes! there was a girl named Lily. She ran home.", training)
    assert copied["longest_copied_words"] == 7  # "there was a girl named lily she"
    assert 0 < copied["copied_4gram_share"] < 1
    fresh = memorization("A purple cow sang loudly.", training)
    assert fresh["longest_copied_words"] <= 1 and fresh["copied_4gram_share"] == 0
    # phrases must not join across two stories
    assert memorization("her red ball tom had", training)["longest_copied_words"] == 3


def test_the_ngram_shortcut_finds_what_a_search_of_the_whole_text_finds():
    """contains() rules phrases out by their n-grams before searching; the answers are the search's own."""
    training = TrainingText(TRAIN, n=4)
    for text in ["Yes! there was a girl named Lily. She ran home.", "her red ball tom had a big dog the dog",
                 TRAIN[0] + " " + TRAIN[1], "she loved her red ball. she loved her red ball.", "dog"]:
        words = text.lower().replace(".", "").replace("!", "").replace(",", "").split()
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                assert training.contains(words[i:j]) == (f" {' '.join(words[i:j])} " in training.blob)


def test_simple_metrics():
    assert perplexity(0.0) == 1.0 and math.isclose(perplexity(math.log(50)), 50)
    assert gap(1.0, 1.5) == 0.5
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b c"], 2) == 1.0
    assert real_word_share("the dog zorbled", {"the", "dog"}) == round(2 / 3, 4)
    q = text_quality(["Tom had a big dog."], TrainingText(TRAIN))
    assert q["longest_copied_words"] == 5 and q["real_word_share"] == 1.0


def test_verdict_and_summary_follow_the_gap():
    assert "clear overfitting" in verdict(0.8) and "almost no gap" in verdict(0.02)

    from slmlib.history import History

    h = History(config={"max_iters": 100}, status="completed", seconds=3.0)
    for it, val in ((0, 6.0), (40, 1.5), (100, 1.9)):
        h.record({"iter": it, "train_loss": 1.0, "val_loss": val})
    h.final = {"train_loss": 1.0, "val_loss": 1.9, "gap": 0.9, "windows": 64, "tokens_per_split": 8192}
    text = summarize(h, floor=0.6)
    assert "gap +0.900" in text and "1.300 nats above" in text
    assert "best val 1.500 at step 40 of 100" in text and "+0.400 from training past the best" in text
    assert "64 windows x 128 tokens" in text
    assert "noise" in verdict(-0.01)


def test_summary_of_an_interrupted_run_says_how_to_resume():
    class H:
        final, seconds, status, resume_path = {}, 2.0, "interrupted", "m.resume.pt"

    assert "resume='m.resume.pt'" in summarize(H())
