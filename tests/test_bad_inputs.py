"""Issue 17's catalogue: every bad input gets a clear error naming it, and loses nothing.

Each case asserts a non-zero exit (command line) or a `CourseError` (Python API), a message
that names the input, no traceback, and that no model or data file changed. Files are damaged
only in temporary copies; the real data/ and models/ are fingerprinted around every case.
"""
from __future__ import annotations

import builtins
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from slmlib import data as D
from slmlib.__main__ import main
from slmlib.checkpoint import default_path, load_model, resume_path_for, save_model
from slmlib.config import LEVELS
from slmlib.errors import CourseError
from slmlib.generation import generate_text, next_token_table
from slmlib.lesson import check_parameters, level_config
from slmlib.paths import DATA_DIR, MODELS_DIR, ROOT
from slmlib.tokenizer import Vocab, gpt2
from cli_support import assert_one_line_error, cli

SENTINEL = b"a trained model that must survive"


def _fingerprint(*folders: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def nothing_lost():
    """The real data/, models/ and the tests' models folder are untouched by every case."""
    folders = (DATA_DIR, ROOT / "models", MODELS_DIR)
    before = _fingerprint(*folders)
    yield
    assert _fingerprint(*folders) == before


@pytest.fixture
def place(tmp_path):
    """A models folder holding a 'trained' ultra_tiny model, and a file where a folder belongs."""
    models = tmp_path / "models"
    models.mkdir()
    model = default_path(LEVELS["ultra_tiny"], models)
    model.write_bytes(SENTINEL)
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    yield {"models": str(models), "file": str(a_file)}
    assert model.read_bytes() == SENTINEL and a_file.read_text() == "not a folder"
    assert sorted(p.name for p in models.iterdir()) == [model.name], "nothing new in the models folder"


# ---------------------------------------------------------------- command-line arguments

CLI_CASES = {
    "train --max-iters -3": (["train", "--level", "ultra_tiny", "--max-iters", "-3", "--out", "{models}"], ["--max-iters", "-3"]),
    "train --max-iters 0": (["train", "--level", "ultra_tiny", "--max-iters", "0", "--out", "{models}"], ["--max-iters", "0"]),
    "train --out FILE": (["train", "--level", "ultra_tiny", "--max-iters", "2", "--out", "{file}"], ["--out", "a_file.txt"]),
    "train --out FILE/sub": (["train", "--level", "ultra_tiny", "--max-iters", "2", "--out", "{file}/sub"], ["--out", "a_file.txt"]),
    "train --results FILE": (["train", "--level", "ultra_tiny", "--max-iters", "2", "--out", "{models}",
                              "--results", "{file}"], ["--results", "a_file.txt"]),
    "test --models FILE": (["test", "--models", "{file}"], ["--models", "a_file.txt"]),
    "test --fresh 0": (["test", "--models", "{models}", "--fresh", "0"], ["--fresh", "0"]),
    "info --models FILE": (["info", "--models", "{file}"], ["--models", "a_file.txt"]),
    "data --dest FILE": (["data", "download-tinystories", "--dest", "{file}"], ["--dest", "a_file.txt"]),
    "course --out FILE": (["course", "--smoke", "--out", "{file}"], ["--out", "a_file.txt"]),
    "bench --out FILE": (["bench", "--quick", "--out", "{file}"], ["--out", "a_file.txt"]),
    "generate --max-new-tokens 100000000": (["generate", "--level", "ultra_tiny", "--prompt", "Once",
                                             "--max-new-tokens", "100000000"], ["--max-new-tokens", "100000000"]),
    "generate --max-new-tokens 0": (["generate", "--level", "ultra_tiny", "--prompt", "Once",
                                     "--max-new-tokens", "0"], ["--max-new-tokens", "0"]),
    "generate --temperature nan": (["generate", "--level", "ultra_tiny", "--prompt", "Once",
                                    "--temperature", "nan"], ["--temperature", "nan"]),
    "generate --temperature inf": (["generate", "--level", "ultra_tiny", "--prompt", "Once",
                                    "--temperature", "inf"], ["--temperature", "inf"]),
    "generate --temperature -1": (["generate", "--level", "ultra_tiny", "--prompt", "Once",
                                   "--temperature", "-1"], ["--temperature", "-1"]),
    "generate --top-k -1": (["generate", "--level", "ultra_tiny", "--prompt", "Once", "--top-k", "-1"],
                            ["--top-k", "-1"]),
    # was "Overflow when unpacking long long", a traceback from torch.manual_seed (issue 23)
    "generate --seed 10**23": (["generate", "--level", "ultra_tiny", "--prompt", "Once", "--seed",
                                "99999999999999999999999"], ["--seed", "99999999999999999999999"]),
    # train has no --seed: argparse reads it as short for --seed-settings, then refuses the number
    "train --seed 10**23": (["train", "--level", "ultra_tiny", "--max-iters", "2", "--out", "{models}", "--seed",
                             "99999999999999999999999"], ["99999999999999999999999"]),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_argument_is_refused_before_any_work(case, place, capsys):
    argv, names = CLI_CASES[case]
    code, out, err = cli(capsys, *(a.format(**place) for a in argv))
    assert_one_line_error(code, err, *names)


def test_unknown_device_is_one_line(place, capsys):
    code, _, err = cli(capsys, "train", "--level", "ultra_tiny", "--max-iters", "2", "--out", place["models"],
                       "--device", "tpu")
    assert_one_line_error(code, err, "tpu")


def test_a_genuine_bug_keeps_its_traceback(monkeypatch, capsys):
    """Only CourseError becomes a one-line message: a plain ValueError is a bug and must show."""
    import slmlib.checkpoint
    import slmlib.generation

    monkeypatch.setattr(slmlib.checkpoint, "load_model", lambda *a, **k: (None, {"vocab": None}))

    def buggy(*a, **k):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(slmlib.generation, "generate_text", buggy)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["generate", "--level", "ultra_tiny", "--prompt", "Once"])


def _interrupted_history(cfg):
    from slmlib.train import History

    return History(config=cfg.to_dict(), status="interrupted", resume_path="x.resume.pt")


def test_interrupted_ladder_exits_130_without_an_empty_table(monkeypatch, place, capsys):
    import slmlib.experiments

    monkeypatch.setattr(slmlib.experiments, "train", lambda cfg, **k: _interrupted_history(cfg))
    code, out, err = cli(capsys, "train", "--level", "ultra_tiny", "--out", place["models"])
    assert code == 130 and "| level |" not in out and "Traceback" not in err
    assert "interrupted" in (out + err)


def test_interrupted_resume_exits_130(monkeypatch, place, capsys):
    import slmlib.train

    resume = resume_path_for(default_path(LEVELS["ultra_tiny"], place["models"]))
    resume.write_bytes(b"resume state")
    monkeypatch.setattr(slmlib.train, "train", lambda cfg, **k: _interrupted_history(cfg))
    try:
        code, out, err = cli(capsys, "train", "--level", "ultra_tiny", "--resume", "--out", place["models"])
    finally:
        resume.unlink()
    assert code == 130 and "Traceback" not in err and "interrupted" in out + err


# ---------------------------------------------------------------- settings (notebooks and CLI alike)

CONFIG_CASES = [
    ("max_iters", -3), ("max_iters", 0), ("max_iters", True), ("max_iters", 2.5), ("stories", 0),
    ("batch_size", 0), ("block_size", 0), ("n_layer", 0), ("n_head", 0), ("n_embd", 0), ("n_embd", 100),
    ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("lr", math.inf), ("dropout", 1.0), ("dropout", -0.1),
    ("weight_decay", -0.1), ("warmup_iters", -1), ("eval_interval", 0), ("eval_windows", 0),
    ("min_lr_ratio", 1.5), ("lr_schedule", "linear"), ("seed", True), ("seed", 99999999999999999999999),
    ("seed", -1),
]


@pytest.mark.parametrize("setting, value", CONFIG_CASES, ids=[f"{k}={v}" for k, v in CONFIG_CASES])
def test_impossible_setting_is_refused_with_its_name(setting, value):
    with pytest.raises(CourseError) as err:
        LEVELS["small"].replace(**{setting: value})  # small: 3 heads, so n_embd=100 does not divide
    assert setting in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("typo, meant", [("max_iter", "max_iters"), ("bogus", None), ("learning_rate", None)])
def test_a_mistyped_setting_is_a_course_error_that_names_it(typo, meant):
    with pytest.raises(CourseError) as err:
        LEVELS["small"].replace(**{typo: 1})
    message = str(err.value)
    assert isinstance(err.value, TypeError) and "\n" not in message  # a TypeError still, as Python's own
    assert typo in message and "valid settings: name, number" in message
    assert (f"did you mean {meant}?" in message) if meant else "did you mean" not in message


def test_a_bad_precision_is_refused_before_any_work(tiny_config, tmp_path):
    from slmlib.train import train

    with pytest.raises(CourseError, match="precision='fp16'.*'fp32' or 'bf16'"):
        train(tiny_config, out=tmp_path / "m.pt", progress=False, precision="fp16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("params", [{"max_iters": True}, {"seed": True}, {"max_iters": 0}],
                         ids=["max_iters=True", "seed=True", "max_iters=0"])
def test_papermill_parameter_of_the_wrong_type(params):
    name = next(iter(params))
    with pytest.raises(CourseError, match=f"parameter {name}"):
        check_parameters(**params)
    with pytest.raises(CourseError, match=name):
        level_config("ultra_tiny", **params)


# ---------------------------------------------------------------- generation

# little_model: tests/conftest.py (shared by the session)

@pytest.mark.parametrize("kwargs, name", [
    ({"temperature": math.nan}, "temperature"), ({"temperature": math.inf}, "temperature"),
    ({"temperature": -0.5}, "temperature"), ({"max_new_tokens": 100_000_000}, "max_new_tokens"),
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"top_k": -1}, "top_k"),
], ids=["temperature=nan", "temperature=inf", "temperature=-0.5", "max_new_tokens=1e8", "max_new_tokens=0",
        "top_k=-1"])
def test_generation_settings_are_checked(little_model, kwargs, name):
    model, vocab, _ = little_model
    with pytest.raises(CourseError, match=name):
        generate_text(model, vocab, "Once upon a time", **{"max_new_tokens": 5, **kwargs})


@pytest.mark.parametrize("temperature", [-0.5, math.nan, "hot"])
def test_the_model_checks_temperature_as_the_text_helpers_do(little_model, temperature):
    """TinyGPT.generate raised a plain ValueError ('temperature must be >= 0') and let nan through."""
    model, vocab, _ = little_model
    with pytest.raises(CourseError) as from_model:
        model.generate(torch.zeros((1, 1), dtype=torch.long), 3, temperature=temperature)
    with pytest.raises(CourseError) as from_text:
        generate_text(model, vocab, "Once", max_new_tokens=3, temperature=temperature)
    assert str(from_model.value) == str(from_text.value) and "finite number >= 0" in str(from_model.value)


def test_next_token_table_refuses_a_nan_temperature(little_model):
    model, vocab, _ = little_model
    with pytest.raises(CourseError, match="temperature"):
        next_token_table(model, vocab, "Once", temperature=math.nan)


def test_widget_shows_course_errors_and_lets_bugs_through(little_model, tmp_path, monkeypatch):
    import slmlib.widgets as Wd

    model, vocab, cfg = little_model
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    monkeypatch.setattr(Wd, "saved_models", lambda models_dir: {"ultra_tiny (20 stories)": path})
    pg = Wd.GenerationPlayground(tmp_path)

    def fails_with(error):
        def generate(*a, **k):
            raise error
        return generate

    monkeypatch.setattr(Wd, "generate_text", fails_with(D.DataFileError("story file x.txt is unreadable")))
    pg.generate_button.click()
    assert "x.txt is unreadable" in pg.text.value and "b00020" in pg.text.value
    monkeypatch.setattr(Wd, "generate_text", fails_with(ValueError("a bug deep inside")))
    with pytest.raises(ValueError, match="a bug deep inside"):
        pg.generate()


# ---------------------------------------------------------------- data files, checked where they are read

@pytest.fixture
def data_copy(tmp_path):
    """A private copy of data/ to damage (never the real one)."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ["stats.json"] + [f"stories_{s}.txt" for s in D.SPLIT_SEEDS]:
        shutil.copy2(DATA_DIR / name, folder / name)
    return folder


def _truncate_train(folder):
    p = folder / "stories_train.txt"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _val_is_train(folder):
    shutil.copy(folder / "stories_train.txt", folder / "stories_val.txt")


def _test_missing(folder):
    (folder / "stories_test.txt").unlink()


def _edit_stats(change):
    def edit(folder):
        p = folder / "stats.json"
        stats = json.loads(p.read_text())
        p.write_text(json.dumps(change(stats)))
    return edit


def _floor(value):
    def change(stats):
        stats["splits"]["val"]["floor_nats_per_token"] = value
        return stats
    return _edit_stats(change)


DATA_CASES = {
    "truncated train split": (_truncate_train, ["stories_train.txt", "git checkout -- data/"]),
    "val split is a copy of train": (_val_is_train, ["stories_val.txt", "copy of the train split"]),
    "missing test split": (_test_missing, ["stories_test.txt", "slmlib data build"]),
    "stats.json is a list": (_edit_stats(lambda s: [1, 2, 3]), ["stats.json", "slmlib data build"]),
    "stats.json without val": (_edit_stats(lambda s: {**s, "splits": {"train": s["splits"]["train"]}}),
                               ["stats.json", "val"]),
    "stats.json splits not a dict": (_edit_stats(lambda s: {**s, "splits": 5}), ["stats.json", "splits"]),
    "entropy floor -5.0": (_floor(-5.0), ["stats.json", "floor_nats_per_token", "-5.0"]),
    "entropy floor nan": (_floor(math.nan), ["stats.json", "floor_nats_per_token", "nan"]),
    "entropy floor a string": (_floor("low"), ["stats.json", "floor_nats_per_token", "low"]),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_damaged_course_data_is_refused(case, data_copy):
    damage, names = DATA_CASES[case]
    damage(data_copy)
    with pytest.raises(CourseError) as err:
        D.load_data(LEVELS["ultra_tiny"], data_dir=data_copy)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, f"{name!r} not in: {message}"


@pytest.mark.parametrize("case", [c for c in DATA_CASES if "stats.json" in c or "floor" in c])
def test_load_stats_checks_the_shape(case, data_copy):
    damage, names = DATA_CASES[case]
    damage(data_copy)
    with pytest.raises(CourseError, match="stats.json"):
        D.load_stats(data_copy)


def test_hash_check_is_cached_by_size_and_mtime(data_copy, monkeypatch):
    D.load_data(LEVELS["ultra_tiny"], data_dir=data_copy)  # verifies and remembers
    calls = []
    real = D.hashlib.sha256
    monkeypatch.setattr(D.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    D.verify_split(D.split_path("train", data_copy), "train", data_copy)
    assert calls == []


def _deny(monkeypatch, target: Path):
    """Reading `target` fails with 'Permission denied' (the tests run as root, so chmod cannot)."""
    real = io.open

    def guarded(file, *a, **k):
        if isinstance(file, (str, Path)) and Path(file).resolve() == target.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *a, **k)

    monkeypatch.setattr(io, "open", guarded)
    monkeypatch.setattr(builtins, "open", guarded)


def test_unreadable_story_file(data_copy, monkeypatch):
    target = data_copy / "stories_val.txt"
    _deny(monkeypatch, target)
    with pytest.raises(CourseError, match="ermission") as err:
        D.load_data(LEVELS["ultra_tiny"], data_dir=data_copy)
    assert "stories_val.txt" in str(err.value)
    with pytest.raises(CourseError, match="ermission"):
        D.read_stories(target)


def test_unreadable_tokenizer_file(tmp_path, monkeypatch):
    ranks = tmp_path / "gpt2.tiktoken"
    shutil.copy(DATA_DIR / "gpt2.tiktoken", ranks)
    _deny(monkeypatch, ranks)
    with pytest.raises(CourseError, match="ermission") as err:
        gpt2(ranks)
    assert "gpt2.tiktoken" in str(err.value)


def _tinystories(folder, train_text, n_valid=4):
    folder.mkdir()
    (folder / D.TINYSTORIES_FILES["train"]).write_text(train_text)
    (folder / D.TINYSTORIES_FILES["valid"]).write_text(D.format_stories([f"Story {i}." for i in range(n_valid)]))
    return folder


def test_tinystories_without_separators(tmp_path):
    folder = _tinystories(tmp_path / "ts", "One long text.\n\nWith no separator lines.\n" * 50)
    with pytest.raises(CourseError, match="<\\|endoftext\\|>") as err:
        D.load_tinystories(folder, n_train=3)
    assert D.TINYSTORIES_FILES["train"] in str(err.value)


def test_tinystories_with_fewer_stories_than_asked(tmp_path):
    folder = _tinystories(tmp_path / "ts", D.format_stories(["A cat sat.", "A dog ran.", "Sue saw a bird."]))
    with pytest.raises(CourseError, match="only 3 stories") as err:
        D.load_data(LEVELS["tiny"].replace(corpus=str(folder)))
    assert "200" in str(err.value)


# ---------------------------------------------------------------- checkpoints

@pytest.fixture
def good_checkpoint(little_model, tmp_path):
    model, vocab, cfg = little_model
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    return path, torch.load(path, weights_only=True)


def _without(key):
    return lambda c: {k: v for k, v in c.items() if k != key}


CHECKPOINT_CASES = {
    "missing vocab": _without("vocab"),
    "config not a dict": lambda c: {**c, "config": "ultra_tiny"},
    "format_version a string": lambda c: {**c, "format_version": "1"},
    "config with impossible settings": lambda c: {**c, "config": {**c["config"], "max_iters": -3}},
    "config missing settings": lambda c: {**c, "config": {"name": "ultra_tiny"}},
    "vocab map without ids": lambda c: {**c, "vocab": {"full": False}},
    "state dict not a dict": lambda c: {**c, "model_state_dict": [1, 2]},
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_unusable_checkpoint(case, good_checkpoint, tmp_path):
    _, ckpt = good_checkpoint
    bad = tmp_path / "bad.pt"
    torch.save(CHECKPOINT_CASES[case](ckpt), bad)
    with pytest.raises(CourseError, match="not a usable checkpoint") as err:
        load_model(bad)
    assert str(bad) in str(err.value)


def test_unknown_weights_name_the_two_kinds_before_reading_the_file(good_checkpoint, monkeypatch):
    path, _ = good_checkpoint
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("read the file before checking weights="))
    with pytest.raises(CourseError, match="weights='worst' is not allowed: use 'final' .* or 'best'"):
        load_model(path, weights="worst")
    with pytest.raises(CourseError, match="give a checkpoint path or a level"):
        load_model()


def test_permission_denied_checkpoint_is_a_permission_problem(good_checkpoint, monkeypatch):
    path, _ = good_checkpoint
    _deny(monkeypatch, path)
    with pytest.raises(CourseError, match="ermission") as err:
        load_model(path)
    assert "train again" not in str(err.value) and "delete" not in str(err.value)


def _assert_not_cut(message: str, library_text: str):
    """The library's own words appear whole, or cut only at the end of a sentence."""
    line = next(ln.strip() for ln in library_text.splitlines() if ln.strip())
    start = message.find(line[:40])
    assert start >= 0, message
    n = 40
    while n < len(line) and message[start: start + n + 1] == line[: n + 1]:
        n += 1
    assert n == len(line) or line[:n].endswith("."), f"cut mid-sentence: {line[:n]!r}"


def test_pytorch_messages_are_not_cut_mid_sentence(good_checkpoint, tmp_path):
    path, ckpt = good_checkpoint
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(Exception) as torch_error:
        torch.load(truncated, weights_only=True)
    with pytest.raises(CourseError) as err:
        load_model(truncated)
    _assert_not_cut(str(err.value), str(torch_error.value))

    evil = tmp_path / "evil.pt"
    torch.save({**ckpt, "payload": Vocab}, evil)  # a class: pickled code, refused by weights_only
    with pytest.raises(Exception) as torch_error:
        torch.load(evil, weights_only=True)
    with pytest.raises(CourseError) as err:
        load_model(evil)
    unpickler = next(ln for ln in str(torch_error.value).splitlines() if "WeightsUnpickler" in ln)
    _assert_not_cut(str(err.value), unpickler.split("error:", 1)[1])


def test_the_index_names_an_unreadable_checkpoint_in_whole_sentences(good_checkpoint, tmp_path):
    from slmlib.checkpoint import read_index

    path, _ = good_checkpoint
    models = tmp_path / "models"
    models.mkdir()
    (models / "model_ultra_tiny_100_stories.pt").write_bytes(path.read_bytes()[:300])
    reasons = [e["reason"] for e in read_index(models)["unreadable"].values()]
    assert len(reasons) == 1 and "not a readable checkpoint" in reasons[0]
    assert reasons[0].endswith("."), f"cut mid-sentence: {reasons[0]!r}"
