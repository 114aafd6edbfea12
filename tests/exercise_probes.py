"""Plausible wrong answers to every exercise task, and the solution notebook that tries them.

Each wrong answer is a solution cell with a wrong implementation or number patched in. `probe_notebook(name)`
is the solution notebook with a probe cell right after the check cell of a task: it tries that task's wrong
answers, each in a copy of the notebook's variables at that point (it runs the patched solution cell, then the
check cell's own source) and prints, after PROBE_MARK, how each ended. A wrong answer can also be tried on a
later task (`then`: the later task's own solution and check run after the wrong cell, so a wrong earlier
answer must not make a later task pass) or with names taken out first (`forget`: an earlier answer or an
earlier check that never ran, which must give a hint, not a NameError). tests/conftest.py runs these notebooks,
once each; test_exercises.py reads the solution's own checks from that run, test_exercise_answers.py the probes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import nbformat

from slmlib import exercises as ex

PROBE_MARK = "PROBE "
CONTROL = "(the check itself, on the solution's variables)"


@dataclass(frozen=True)
class Wrong:
    """A wrong answer: in task `task`'s solution cell, each `old` text replaced by its `new` text."""

    what: str
    task: int
    patches: tuple[tuple[str, str], ...]
    hint: str  # a piece of the failing check's message
    after: int | None = None  # probe after this task's check instead (the state a later moment has)
    then: int | None = None  # then run this later task's solution and check it (not `task`'s check)
    forget: tuple[str, ...] = ()  # names taken out of the copy of the variables before anything runs

    @property
    def probed_at(self) -> int:
        """The task after whose check the probe cell sits."""
        return self.after or self.then or self.task


def _reuse(line: str, instead: str) -> tuple[str, str]:
    """Skip a training line in a wrong answer: the probe reuses the run the solution already made."""
    return line, instead


WRONG: dict[str, list[Wrong]] = {
    "ex01_tokens": [
        Wrong("counts words, not tokens", 1, (("return len(gpt2().encode(text))", "return len(text.split())"),),
              "count tokens, not words"),
        Wrong("forgets one <|endoftext|> per story", 2, (("count_tokens(s) + 1 for s", "count_tokens(s) for s"),),
              "add one <|endoftext|> token per story"),
        Wrong("builds the vocabulary from more stories than level 1's", 3,
              (("vocab = Vocab.from_texts(stories)",
                'vocab = Vocab.from_texts(read_stories(split_path("train"), limit=300))'),),
              "build the vocabulary from the 100 stories"),
    ],
    "ex02_causal_mask": [
        Wrong("mask above the diagonal", 1, (("torch.tril(", "torch.triu("),), "may look at earlier positions"),
        Wrong("scores not scaled", 2, (("q @ k.transpose(-2, -1) / math.sqrt(head_size)", "q @ k.transpose(-2, -1)"),),
              "divide the scores by math.sqrt(head_size)"),
        Wrong("lists the positions from pos on without running the model", 3,
              (("    edited = idx.clone()", "    return list(range(pos, idx.size(1)))\n    edited = idx.clone()"),),
              "putting back the same token changes nothing"),
        Wrong("skips the no-op case but still assumes a causal model", 3,
              (("    edited = idx.clone()",
                "    return [] if int(idx[0, pos]) == new_token else list(range(pos, idx.size(1)))\n"
                "    edited = idx.clone()"),),
              "a model that reads backwards"),
    ],
    "ex03_first_model": [
        Wrong("tokens seen without the window length", 1,
              (_reuse('history = train(cfg, out=OUT / "ultra_tiny.pt")\n', ""),
               ("cfg.max_iters * cfg.batch_size * cfg.block_size", "cfg.max_iters * cfg.batch_size")),
              "steps x windows per step x tokens per window"),
        Wrong("best step = the last step", 2,
              (("return iters[val_losses.index(min(val_losses))]", "return iters[-1]"),), "return the step"),
        Wrong("best step = the position in the list", 2,
              (("return iters[val_losses.index(min(val_losses))]", "return val_losses.index(min(val_losses))"),),
              "return the step"),
        Wrong("rise measured from the first evaluation", 2,
              (("return val_losses[-1] - min(val_losses)", "return val_losses[-1] - val_losses[0]"),),
              "the last one minus the lowest one"),
        # Issue 25: at 20 smoke steps the best step is always the last, so this passed when the check compared
        # best_step and rise with the run's own numbers only.
        Wrong("a run that never turns: best = the last step, no rise", 2,
              (("return iters[val_losses.index(min(val_losses))]", "return iters[-1]"),
               ("return val_losses[-1] - min(val_losses)", "return 0.0")),
              "return the step, not the last step"),
        Wrong("no rise", 2, (("return val_losses[-1] - min(val_losses)", "return 0.0"),), "rose by 1.1"),
        Wrong("continuations written without the model", 3,
              (("samples = {p: generate_text(history.model, history.data.vocab, p, max_new_tokens=40, "
                "temperature=0.8, seed=seed)\n           for p in my_prompts}",
                'samples = {p: p + " there was a little girl who liked to play." for p in my_prompts}'),),
              "is not what your model writes"),
        Wrong("Task 1 never made history", 3, (), "history comes from Task 1", forget=("history",)),
    ],
    "ex04_data_per_parameter": [
        Wrong("counts the output layer as a second V x C", 1,
              (("return V * C + T * C + L * per_block + 2 * C", "return 2 * V * C + T * C + L * per_block + 2 * C"),),
              "shares the token embedding's weights"),
        Wrong("asks the model instead of counting", 1,
              (("return V * C + T * C + L * per_block + 2 * C", "return TinyGPT.from_config(cfg, vocab_size).num_params()"),),
              "count by hand"),
        Wrong("sums the model's parameters instead of counting", 1,
              (("return V * C + T * C + L * per_block + 2 * C",
                "return sum(p.numel() for p in TinyGPT.from_config(cfg, vocab_size).parameters())"),),
              "count by hand"),
        Wrong("stories needed from the total tokens, not tokens per story", 3,
              (("(tokens[name] / cfg.stories)", "tokens[name]"),), "20 x parameters / (tokens per story)"),
        Wrong("parameters per token", 2,
              (("tokens[name] / param_count(cfg, vocab_size)", "param_count(cfg, vocab_size) / tokens[name]"),),
              "ratios['ultra_tiny'] = tokens / parameters"),
        # Issue 25: Task 4's check read Task 2's ratios, so inverted ratios made "fewest: large" pass.
        Wrong("parameters per token, then the fewest of those", 2,
              (("tokens[name] / param_count(cfg, vocab_size)", "param_count(cfg, vocab_size) / tokens[name]"),),
              "not the fewest", then=4),
        Wrong("fewest tokens per parameter = fewest stories", 4,
              (("min(ratios, key=ratios.get)", "min(LEVELS, key=lambda name: LEVELS[name].stories)"),),
              "not the fewest"),
        Wrong("passes without the windows per step", 4,
              (("cfg.max_iters * cfg.batch_size * cfg.block_size / tokens[name]",
                "cfg.max_iters * cfg.block_size / tokens[name]"),),
              "max_iters x batch_size x block_size / tokens"),
    ],
    "ex05_memorisation": [
        Wrong("n-grams one word short", 1, (("range(len(words) - n + 1)", "range(len(words) - n)"),), "every slice"),
        Wrong("the library's ngrams", 1,
              (("def word_ngrams(", "from slmlib.metrics import ngrams\n\n\ndef word_ngrams("),
               ("return [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]", "return ngrams(words, n)")),
              "write word_ngrams yourself"),
        Wrong("share of the training n-grams, not of the text's", 2,
              (("sum(g in training_ngrams for g in grams) / len(grams)",
                "sum(g in training_ngrams for g in grams) / len(training_ngrams)"),),
              "every n-gram of a training story is in the set"),
        Wrong("the share from memorization()", 2,
              (("return sum(g in training_ngrams for g in grams) / len(grams) if grams else 0.0",
                'return memorization(text, TrainingText(train_stories, n=n))[f"copied_{n}gram_share"]'),),
              "without slmlib.metrics' memorization"),
        Wrong("longest span only from the first word", 3, (("    for i in range(len(words)):", "    for i in range(1):"),),
              "the longest span here is 20 words"),
        Wrong("the span from memorization()", 3,
              (("    words = words_of(text)\n    longest = 0", '    return memorization(text, training)["longest_copied_words"]\n    longest = 0'),),
              "without slmlib.metrics' memorization"),
        Wrong("report without generating anything (0% copied, 0 words)", 4,
              (_reuse('history = train(level_config("ultra_tiny", smoke=smoke, seed=seed), out=OUT / "ultra_tiny.pt")\n', ""),
               ("    text = generate_text(model, vocab, prompt, max_new_tokens=80, seed=seed)", '    text = ""')),
              "is not what your model writes"),
        Wrong("samples without the seed", 4,
              (_reuse('history = train(level_config("ultra_tiny", smoke=smoke, seed=seed), out=OUT / "ultra_tiny.pt")\n', ""),
               ("generate_text(model, vocab, prompt, max_new_tokens=80, seed=seed)",
                "generate_text(model, vocab, prompt, max_new_tokens=80)")),
              "is not what your model writes"),
        Wrong("excess over chance as a ratio", 4,
              (_reuse('history = train(level_config("ultra_tiny", smoke=smoke, seed=seed), out=OUT / "ultra_tiny.pt")\n', ""),
               ('"excess": share - baseline["copied_share"]', '"excess": share / baseline["copied_share"]')),
              "excess = the sample's copied_share - baseline"),
    ],
    "ex06_data_scaling_law": [
        Wrong("beta with the wrong sign", 1, (("beta_guess = -math.log10(ratio_guess)", "beta_guess = math.log10(ratio_guess)"),),
              "10^−β is your ratio"),
        Wrong("beta from the natural logarithm", 1,
              (("beta_guess = -math.log10(ratio_guess)", "beta_guess = -math.log(ratio_guess)"),), "10^−β is your ratio"),
        Wrong("the ratio upside down (2 for halved)", 1, (("ratio_guess = 0.5  #", "ratio_guess = 2.0  #"),),
              "between 0 and 1"),
        Wrong("guess written after the runs", 1, (), "predict before you train", after=2),
        Wrong("the final validation loss, not the lowest", 2,
              (('return min(record["val_loss"] for record in run["records"]) - run["floor"]',
                'return run["records"][-1]["val_loss"] - run["floor"]'),),
              "its best step, not the last"),
        Wrong("forgets to subtract the floor", 2,
              (('return min(record["val_loss"] for record in run["records"]) - run["floor"]',
                'return min(record["val_loss"] for record in run["records"])'),),
              "subtract the floor"),
        Wrong("the lowest training loss", 2,
              (('min(record["val_loss"] for record', 'min(record["train_loss"] for record'),),
              "lowest validation loss of the run"),
        Wrong("the best validation loss from sweep_row", 2,
              (('return min(record["val_loss"] for record in run["records"]) - run["floor"]',
                'return sweep.sweep_row(run)["best_val"] - run["floor"]'),),
              "without slmlib.sweep's tables"),
        Wrong("one story count left out", 2, (("for n in sizes]", "for n in sizes[:-1]]"),), "one run per story count"),
        Wrong("forgets the floor, then Task 3 on it", 2,
              (('return min(record["val_loss"] for record in run["records"]) - run["floor"]',
                'return min(record["val_loss"] for record in run["records"])'),),
              "fix Task 2 first", then=3),
        Wrong("beta with the wrong sign", 3, (("return float(np.exp(intercept)), float(-slope)",
                                                "return float(np.exp(intercept)), float(slope)"),),
              "β is minus the slope"),
        Wrong("a straight line in stories, not on log-log axes", 3,
              (("np.polyfit(np.log(stories), np.log(above), 1)", "np.polyfit(stories, above, 1)"),),
              "on log-log axes"),
        Wrong("a line in log(stories) against the loss itself", 3,
              (("np.polyfit(np.log(stories), np.log(above), 1)", "np.polyfit(np.log(stories), above, 1)"),),
              "on log-log axes"),
        Wrong("the line through the first and last points", 3,
              (("    slope, intercept = np.polyfit(np.log(stories), np.log(above), 1)",
                "    x, y = np.log(stories), np.log(above)\n    slope = (y[-1] - y[0]) / (x[-1] - x[0])\n"
                "    intercept = y[0] - slope * x[0]"),),
              "least-squares line through all of them"),
        Wrong("the course's line fit", 3,
              (("    slope, intercept = np.polyfit(np.log(stories), np.log(above), 1)",
                "    intercept, slope, _ = sweep._line_fit([math.log(s) for s in stories], [math.log(y) for y in above])"),),
              "without slmlib.sweep's fit"),
        Wrong("prediction without the floor", 3, (("predicted = floor + B * held_out ** -beta", "predicted = B * held_out ** -beta"),),
              "add the floor back"),
        Wrong("prediction from the last size's loss", 3,
              (("predicted = floor + B * held_out ** -beta", "predicted = floor + above[-1]"),), "the floor plus B · held_out^−β"),
        Wrong("prediction written after the held-out run", 3, (), "predict before you train the held-out size", after=4),
        Wrong("guess bent to the result", 3, (("B, beta = fit_power_law(sizes, above)\n",
                                               "B, beta = fit_power_law(sizes, above)\nbeta_guess = beta\n"),),
              "beta_guess changed after Task 1"),
        # Issue 25: a missing earlier record was a NameError.
        Wrong("Task 1's check never passed", 3, (), "no guess on record", forget=("prediction_at_task_1",)),
        Wrong("Task 2 never ran", 3, (), "above comes from Task 2", forget=("above", "runs", "floor")),
        # Task 3's check records the prediction before it fails; `then` runs no check in between, so the patch does.
        Wrong("prediction without the floor, then Task 4 on it", 3,
              (("predicted = floor + B * held_out ** -beta",
                "predicted = B * held_out ** -beta\nprediction_at_task_3 = predicted"),),
              "fix Task 3 first", then=4),
        Wrong("error as predicted minus measured", 4,
              (('return min(record["val_loss"] for record in run["records"]) - predicted',
                'return predicted - min(record["val_loss"] for record in run["records"])'),),
              "measured minus predicted"),
        Wrong("error from the final validation loss", 4,
              (('return min(record["val_loss"] for record in run["records"]) - predicted',
                'return run["records"][-1]["val_loss"] - predicted'),),
              "its best step, not the last"),
        Wrong("the held-out run at a size of the fit", 4,
              (("sweep.sweep_config(held_out, seed, base)", "sweep.sweep_config(sizes[-1], seed, base)"),),
              "held_run is one run"),
        Wrong("closer as True/False", 4,
              (('closer = "yours" if abs(error) < abs(course_error) else "the course\'s"',
                "closer = abs(error) < abs(course_error)"),),
              "one of the two strings"),
        Wrong("prediction bent to the result", 4,
              (("error = prediction_error(predicted, held_run)",
                'predicted = min(r["val_loss"] for r in held_run["records"])\nerror = prediction_error(predicted, held_run)'),),
              "predicted changed after Task 3"),
        Wrong("Task 3's check never passed", 4, (), "no prediction on record", forget=("prediction_at_task_3",)),
    ],
    "ex08_compare_levels": [
        Wrong("train and val swapped", 1,
              (_reuse('    history = train(cfg, out=OUT / f"{name}.pt")', '    history = load_model(OUT / f"{name}.pt")[1]["history"]'),
               ('"train_loss": final["train_loss"],\n            "val_loss": final["val_loss"]',
                '"train_loss": final["val_loss"],\n            "val_loss": final["train_loss"]')),
              "train_loss and val_loss are the final ones"),
        # Issue 25: at 20 smoke steps the best validation loss is the last one, so these passed.
        Wrong("best_val = the final validation loss", 1,
              (_reuse('    history = train(cfg, out=OUT / f"{name}.pt")', '    history = load_model(OUT / f"{name}.pt")[1]["history"]'),
               ('"best_val": history.best["val_loss"]', '"best_val": final["val_loss"]')),
              "not the final one"),
        Wrong("val_loss = the best validation loss", 1,
              (_reuse('    history = train(cfg, out=OUT / f"{name}.pt")', '    history = load_model(OUT / f"{name}.pt")[1]["history"]'),
               ('"val_loss": final["val_loss"], "gap"', '"val_loss": history.best["val_loss"], "gap"')),
              "still the final ones"),
        Wrong("gap as train minus val, then the plot of those rows", 1,
              (_reuse('    history = train(cfg, out=OUT / f"{name}.pt")', '    history = load_model(OUT / f"{name}.pt")[1]["history"]'),
               ('"gap": final["val_loss"] - final["train_loss"]', '"gap": final["train_loss"] - final["val_loss"]')),
              "y = the gap of each level", then=3),
        Wrong("only the architecture changes", 2,
              (("configs = [cfg.to_dict() for cfg in LEVELS.values()]",
                'configs = [{k: cfg.to_dict()[k] for k in ("name", "n_layer", "n_head", "n_embd")} '
                "for cfg in LEVELS.values()]"),),
              "also differ from level to level"),
        Wrong("gap plotted against the level's position", 3,
              (('ax.plot([r["stories"] for r in rows], ', "ax.plot(list(range(1, len(rows) + 1)), "),),
               "x = the stories of each level"),
    ],
    "ex09_sampling": [
        Wrong("multiplies by the temperature", 1, (("logits / temperature", "logits * temperature"),),
              "divide the logits by the temperature"),
        Wrong("keeps only the largest value", 2, (("torch.topk(logits, k).values[..., [-1]]", "torch.topk(logits, k).values[..., [0]]"),),
              "exactly k values per row stay"),
        Wrong("top-k left out", 3,
              (("    if top_k is not None:\n        logits = top_k_filter(logits, top_k)\n", ""),),
              "only the 3 most likely tokens"),
        Wrong("samples from the first position's logits", 4, (("logits[:, -1, :]", "logits[:, 0, :]"),),
              "TinyGPT.generate chose differently"),
        Wrong("a new generator for every token", 4,
              (("sample_next(logits[:, -1, :], temperature, top_k, generator)",
                "sample_next(logits[:, -1, :], temperature, top_k, torch.Generator().manual_seed(seed))"),),
              "TinyGPT.generate chose differently"),
    ],
    "ex10_open_experiment": [
        Wrong("two settings changed at once", 1,
              (("baseline.replace(dropout=0.2)", "baseline.replace(dropout=0.2, weight_decay=0.1)"),),
              "change exactly one setting"),
        Wrong("a free-text prediction", 1,
              (('prediction = {"gap": "down", "val": "about the same"}',
                'prediction = "I expect a smaller gap, because dropout makes memorising harder."'),),
              "prediction = {'gap': ..., 'val': ...}"),
        Wrong("prediction written after the runs", 1, (), "predict before you train", after=2),
        Wrong("effect as baseline minus changed", 2,
              (_reuse('runs = {tag: train(cfg, out=OUT / f"{tag}.pt")', "runs = {tag: runs[tag]"),
               ('measure(runs["changed"])[k] - measure(runs["baseline"])[k]',
                'measure(runs["baseline"])[k] - measure(runs["changed"])[k]')),
              "effect['gap'] = changed minus baseline"),
        # Issue 25: at 20 smoke steps the best validation loss is the last one, so this passed.
        Wrong("best val = the final validation loss", 2,
              (_reuse('runs = {tag: train(cfg, out=OUT / f"{tag}.pt")', "runs = {tag: runs[tag]"),
               ('"val": history.best["val_loss"]', '"val": history.final["val_loss"]')),
              "not the final one"),
        Wrong("gap at the best step", 2,
              (_reuse('runs = {tag: train(cfg, out=OUT / f"{tag}.pt")', "runs = {tag: runs[tag]"),
               ('"gap": history.final["gap"]', '"gap": history.best["val_loss"] - history.best["train_loss"]')),
              "read at the end of the run"),
        Wrong("effect as baseline minus changed, then Task 3 on it", 2,
              (_reuse('runs = {tag: train(cfg, out=OUT / f"{tag}.pt")', "runs = {tag: runs[tag]"),
               ('measure(runs["changed"])[k] - measure(runs["baseline"])[k]',
                'measure(runs["baseline"])[k] - measure(runs["changed"])[k]')),
              "fix Task 2 first", then=3),
        Wrong("direction ignores the noise", 3,
              (('    if abs(effect) <= noise:\n        return "about the same"\n', ""),), "no larger than the noise"),
        Wrong("prediction bent to the result", 3,
              (("right = sum(", "prediction = dict(measured)\nright = sum("),), "prediction changed after Task 1"),
        Wrong("Task 1's check never passed", 3, (), "no prediction on record", forget=("prediction_at_task_1",)),
    ],
}

PROBE = '''import json as _json
_probe = {}
for _what, (_forget, _cells, _check) in _json.loads(%r).items():
    _namespace = {k: v for k, v in globals().items() if k not in _forget}
    try:
        for _cell in _cells:
            try:
                exec(compile(_cell, "<wrong answer>", "exec"), _namespace)
            except Exception:
                if not _forget:  # a missing earlier answer breaks the student's own cell too; the check still runs
                    raise
        exec(compile(_check, "<check>", "exec"), _namespace)
    except Exception as _e:
        _probe[_what] = [type(_e).__name__, str(_e)]
    else:
        _probe[_what] = ["passed", ""]
print(%r + _json.dumps(_probe))'''


def _patched(source: str, wrong: Wrong) -> str:
    for old, new in wrong.patches:
        assert source.count(old) == 1, f"{wrong.what}: {old!r} is not (once) in the solution cell; update the test"
        source = source.replace(old, new)
    return source


def probe_notebook(name: str) -> nbformat.NotebookNode:
    """The solution notebook with a probe cell after each check cell that has wrong answers to try."""
    nb = nbformat.read(ex.SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
    checks = [i for i, c in enumerate(nb.cells) if ex.is_check_cell(c)]
    probes = {}
    for wrong in WRONG[name]:
        solution = nb.cells[checks[wrong.task - 1] - 1]
        assert ex.BEGIN in solution.source, f"{name}: the cell before check {wrong.task} holds no solution"
        cells = [_patched(solution.source, wrong)]
        if wrong.then:
            assert wrong.then > wrong.task, f"{wrong.what}: `then` names a later task"
            cells.append(nb.cells[checks[wrong.then - 1] - 1].source)
        check = nb.cells[checks[(wrong.then or wrong.task) - 1]]
        probes.setdefault(wrong.probed_at, {})[wrong.what] = [list(wrong.forget), cells,
                                                                                      check.source]
    for task in sorted(probes, reverse=True):  # from the end, so the indices stay valid
        check = nb.cells[checks[task - 1]]
        cases = {CONTROL: [[], [], check.source], **probes[task]}
        cell = nbformat.v4.new_code_cell(PROBE % (json.dumps(cases), PROBE_MARK))
        cell.metadata["probe_task"] = task
        nb.cells.insert(checks[task - 1] + 1, cell)
    return nb
