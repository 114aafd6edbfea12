"""Issue 24, "Nothing a run has done is lost": each case failed (lost work, a traceback, or
silently wrong data) before it was fixed at its root.

Signals stop training at a step boundary; resume files and kept-aside models are never
overwritten; experiments write their results apart from the ladder's; checkpoints and the
token cache are checked where they are read; bad arguments are refused before any work.
"""
from __future__ import annotations

import json
import math
import signal

import pytest
import torch

import slmlib.data as D
from slmlib.checkpoint import (default_path, keep_previous, load_model, previous_path_for, read_index,
                               resume_path_for, save_model)
from slmlib.config import LEVELS
from slmlib.errors import CourseError
from slmlib.generation import generate_text, next_token_table
from slmlib.model import TinyGPT
from slmlib.paths import DATA_DIR, ROOT
from slmlib.train import train
from cli_support import assert_one_line_error, cli

UNWRITABLE = "/sys/slm-course-test"  # /sys refuses new files, even to root


@pytest.fixture(autouse=True)
def real_files_untouched():
    """The real data/ and models/ are never touched by any case here."""
    def fingerprint():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for folder in (DATA_DIR, ROOT / "models")
                if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()}
    before = fingerprint()
    yield
    assert fingerprint() == before


@pytest.fixture
def data(tiny_config):
    return D.load_data(tiny_config)


def _interrupt_at(step):
    def callback(history):
        if history.records[-1]["iter"] == step:
            raise KeyboardInterrupt
    return callback


# ---------------------------------------------------------------- signals and resume files

def test_sigterm_saves_the_run_like_ctrl_c(tiny_config, data, tmp_path):
    """`kill`, `timeout` and batch schedulers send SIGTERM: the run must stop at a step and save."""
    def killed_by_the_old_default(signum, frame):  # stands in for SIGTERM's default: the process dies
        raise RuntimeError("SIGTERM was not handled: the run is lost")

    def send_sigterm(history):
        if history.records[-1]["iter"] == 20:
            signal.raise_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, killed_by_the_old_default)
    try:
        h = train(tiny_config, data=data, out=tmp_path / "m.pt", progress=False, callbacks=[send_sigterm])
        assert signal.getsignal(signal.SIGTERM) is killed_by_the_old_default  # restored afterwards
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert h.status == "interrupted" and h.records[-1]["iter"] == 20
    assert resume_path_for(tmp_path / "m.pt").is_file()
    done = train(tiny_config, data=data, out=tmp_path / "m.pt", progress=False,
                 resume=resume_path_for(tmp_path / "m.pt"))
    assert done.status == "completed"


def test_a_second_stopped_run_keeps_the_first_runs_resume_state(tiny_config, data, tmp_path, capsys):
    out = tmp_path / "m.pt"
    train(tiny_config, data=data, out=out, progress=False, callbacks=[_interrupt_at(20)])
    first = resume_path_for(out).read_bytes()
    train(tiny_config, data=data, out=out, progress=False, callbacks=[_interrupt_at(10)])  # no resume=
    kept = [p for p in tmp_path.glob("*.resume.pt") if p != resume_path_for(out)]
    assert len(kept) == 1 and kept[0].read_bytes() == first
    assert str(kept[0]) in capsys.readouterr().out  # and it says so
    assert "m.pt" not in read_index(tmp_path)["models"] and not read_index(tmp_path)["unreadable"]
    # the first run resumes from the kept file, to the end
    assert train(tiny_config, data=data, out=out, progress=False, resume=kept[0]).status == "completed"


def test_resuming_and_stopping_again_updates_the_same_file(tiny_config, data, tmp_path):
    out = tmp_path / "m.pt"
    train(tiny_config, data=data, out=out, progress=False, callbacks=[_interrupt_at(10)])
    train(tiny_config, data=data, out=out, progress=False, resume=resume_path_for(out),
          callbacks=[_interrupt_at(20)])
    assert sorted(p.name for p in tmp_path.glob("*.resume.pt")) == [resume_path_for(out).name]


def test_a_second_force_keeps_the_levels_real_model(tmp_path):
    model = default_path(LEVELS["tiny"], tmp_path)
    model.write_bytes(b"the level's real model")
    first = keep_previous(model)
    model.write_bytes(b"a forced experiment")
    second = keep_previous(model)
    assert first == previous_path_for(model) and first.read_bytes() == b"the level's real model"
    assert second != first and second.read_bytes() == b"a forced experiment"
    assert second.name.endswith(".previous.pt")  # never listed as a model in the index


# ---------------------------------------------------------------- results of experiments and ladders

@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """A fresh outputs/ holding the ladder's real results, which experiments must leave alone."""
    import slmlib.__main__
    import slmlib.tooling.course

    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "ladder_results.json").write_text('{"levels": [{"level": "the real ladder"}]}')
    monkeypatch.setattr(slmlib.__main__, "OUTPUTS_DIR", folder)
    monkeypatch.setattr(slmlib.tooling.course, "OUTPUTS_DIR", folder)
    return folder


def test_a_quick_try_does_not_replace_the_ladders_results(outputs, tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--level", "ultra_tiny", "--max-iters", "2", "--out", tmp_path / "models")
    assert code == 0, err
    assert json.loads((outputs / "ladder_results.json").read_text())["levels"][0]["level"] == "the real ladder"
    written = list((outputs / "experiments").rglob("ladder_results.json"))
    assert len(written) == 1 and "max_iters=2" in str(written[0]) and str(written[0].parent) in out


def test_course_does_not_print_results_it_did_not_write(outputs, tmp_path, monkeypatch, capsys):
    import slmlib.tooling.course as course

    lesson = tmp_path / "00_x.ipynb"
    lesson.write_text("{}")
    monkeypatch.setattr(course, "lesson_paths", lambda only=None: [lesson])
    monkeypatch.setattr(course, "run_notebook", lambda path, out_path, params, **k: (
        out_path.parent.mkdir(parents=True, exist_ok=True), out_path.write_text("{}"),
        {"notebook": path.name, "status": "ok", "error": "", "seconds": 0.1})[-1])
    assert course.run_course(smoke=False, only=["00"], out_dir=tmp_path / "executed")
    assert "the real ladder" not in capsys.readouterr().out


def test_a_resumed_ladder_writes_its_results_and_the_resume_command_keeps_them(tmp_path, monkeypatch, capsys):
    import slmlib.experiments

    real_train = slmlib.experiments.train

    def stop_tiny(cfg, **kwargs):
        stop = [_interrupt_at(0)] if cfg.name == "tiny" else []
        return real_train(cfg, **{**kwargs, "callbacks": stop})

    models, results = tmp_path / "models", tmp_path / "my results"
    argv = ["train", "--level", "ultra_tiny,tiny", "--max-iters", "3", "--out", models, "--results", results]
    monkeypatch.setattr(slmlib.experiments, "train", stop_tiny)
    code, _, err = cli(capsys, *argv)
    assert code == 130 and "--results" in err and "ultra_tiny,tiny" in err, err
    assert "'" + str(results) + "'" in err  # quoted: the folder name has a space
    monkeypatch.setattr(slmlib.experiments, "train", real_train)
    code, _, err = cli(capsys, *argv, "--resume")
    assert code == 0, err
    levels = json.loads((results / "ladder_results.json").read_text())["levels"]
    assert [r["level"] for r in levels] == ["ultra_tiny", "tiny"] and levels[1]["max_iters"] == 3


# ---------------------------------------------------------------- checkpoints, checked at load

@pytest.fixture
def little(little_model):
    """The session's untrained little model (tests/conftest.py): (model, vocab, config)."""
    return little_model


@pytest.fixture
def nan_model(little, tmp_path):
    model, vocab, cfg = little
    broken = TinyGPT.from_config(cfg, len(vocab))
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(broken.parameters()).fill_(math.nan)
    models = tmp_path / "models"
    return save_model(broken, default_path(LEVELS["ultra_tiny"], models), cfg, vocab, update_index=False)


def test_nan_weights_are_refused_at_load(nan_model):
    with pytest.raises(CourseError, match="NaN") as err:
        load_model(nan_model)
    assert str(nan_model) in str(err.value)


def test_generate_with_nan_weights_is_one_line(nan_model, capsys):
    code, out, err = cli(capsys, "generate", "--checkpoint", nan_model, "--prompt", "Once upon a time")
    assert_one_line_error(code, err, "NaN")


def test_info_does_not_list_nan_weights_as_healthy(nan_model, capsys):
    index = read_index(nan_model.parent)
    assert not index["models"] and "NaN" in next(iter(index["unreadable"].values()))["reason"]


def test_test_with_nan_weights_is_one_line(nan_model, capsys):
    code, _, err = cli(capsys, "test", "--models", nan_model.parent, "--fresh", "1")
    assert_one_line_error(code, err, "NaN")


def test_a_huge_config_is_checked_against_the_weights_before_anything_is_built(little, tmp_path, monkeypatch):
    import slmlib.checkpoint

    model, vocab, cfg = little
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"] = {**ckpt["config"], "n_layer": 64, "n_embd": 2048, "n_head": 2}
    torch.save(ckpt, path)
    real = slmlib.checkpoint.TinyGPT.from_config

    def only_on_meta(config, vocab_size):
        if config.n_layer == 64 and torch.empty(0).device.type != "meta":
            raise AssertionError("a 64 x 2048 model (tens of GB) was allocated before its shapes were checked")
        return real(config, vocab_size)

    monkeypatch.setattr(slmlib.checkpoint.TinyGPT, "from_config", staticmethod(only_on_meta))
    with pytest.raises(CourseError, match="do not match"):
        load_model(path)


# ---------------------------------------------------------------- the token cache, checked at read

@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "OUTPUTS_DIR", tmp_path)
    D._course_split_stream.cache_clear()
    yield tmp_path / ".cache"
    D._course_split_stream.cache_clear()


def _caches(folder):
    return {p.name.split("-")[0]: p for p in folder.glob("*.pt")}


def test_a_cache_replaced_by_another_splits_is_not_trained_on(cache_dir):
    data_dir = str(DATA_DIR.resolve())
    train_ids = D._course_split_stream("train", data_dir).clone()
    D._course_split_stream("val", data_dir)
    caches = _caches(cache_dir)
    caches["stories_train"].write_bytes(caches["stories_val"].read_bytes())
    D._course_split_stream.cache_clear()
    assert torch.equal(D._course_split_stream("train", data_dir), train_ids)


def test_a_cache_cut_to_a_third_is_not_trained_on(cache_dir):
    data_dir = str(DATA_DIR.resolve())
    train_ids = D._course_split_stream("train", data_dir).clone()
    cache = _caches(cache_dir)["stories_train"]
    entry = torch.load(cache, weights_only=True)
    third = train_ids[: train_ids.numel() // 3].clone()
    torch.save(third, cache)  # a third of the stream, as a plain tensor
    D._course_split_stream.cache_clear()
    assert torch.equal(D._course_split_stream("train", data_dir), train_ids)
    if isinstance(entry, dict):  # the same, inside a well-formed cache entry
        torch.save({**entry, "stream": third}, cache)
        D._course_split_stream.cache_clear()
        assert torch.equal(D._course_split_stream("train", data_dir), train_ids)


# ---------------------------------------------------------------- arguments refused at the entry

def _no_training(monkeypatch):
    import slmlib.experiments

    def no_work(*a, **k):
        raise AssertionError("training started (and would have run for ever)")

    monkeypatch.setattr(slmlib.experiments, "train_ladder", no_work)


def test_a_huge_max_iters_is_refused(tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    code, _, err = cli(capsys, "train", "--level", "ultra_tiny", "--max-iters", "9" * 23, "--out", tmp_path)
    assert_one_line_error(code, err, "--max-iters", "9" * 23)
    with pytest.raises(CourseError, match="max_iters"):
        LEVELS["tiny"].replace(max_iters=10**23)


def test_a_huge_seed_is_refused(little, tmp_path, capsys):
    model, vocab, cfg = little
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    code, _, err = cli(capsys, "generate", "--checkpoint", path, "--prompt", "Once", "--seed", "9" * 23)
    assert_one_line_error(code, err, "--seed")
    with pytest.raises(CourseError, match="seed"):
        generate_text(model, vocab, "Once", seed=10**23)
    with pytest.raises(CourseError, match="seed"):
        LEVELS["tiny"].replace(seed=10**23)


@pytest.mark.parametrize("level", ["", " ", ",", "tiny,nope"])
def test_an_empty_or_unknown_level_is_refused(level, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    code, _, err = cli(capsys, "train", "--level", level, "--max-iters", "2", "--out", tmp_path)
    assert_one_line_error(code, err, "--level")


def test_a_tiny_temperature_generates(little, tmp_path, capsys):
    model, vocab, cfg = little
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    code, out, err = cli(capsys, "generate", "--checkpoint", path, "--prompt", "Once", "--temperature", "1e-300",
                         "--max-new-tokens", "5")
    assert code == 0 and out.startswith("Once") and "Traceback" not in err, err
    greedy = generate_text(model, vocab, "Once", max_new_tokens=5, temperature=0)
    assert generate_text(model, vocab, "Once", max_new_tokens=5, temperature=1e-300, top_k=None) == greedy


@pytest.mark.parametrize("where", ["folder", "unwritable"])
def test_score_html_to_a_place_it_cannot_write(where, little, tmp_path, capsys):
    model, vocab, cfg = little
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    html = tmp_path if where == "folder" else f"{UNWRITABLE}/s.html"
    code, _, err = cli(capsys, "score", "--checkpoint", path, "--text", "Once upon a time", "--html", html)
    assert_one_line_error(code, err, "--html")


@pytest.mark.parametrize("argv", [["data", "prepare-tinystories", "--dest", UNWRITABLE],
                                  ["course", "--smoke", "--only", "00", "--out", UNWRITABLE],
                                  ["bench", "--quick", "--out", UNWRITABLE],
                                  ["train", "--level", "ultra_tiny", "--max-iters", "2", "--results", UNWRITABLE]],
                         ids=["data --dest", "course --out", "bench --out", "train --results"])
def test_an_unwritable_output_folder_is_refused_before_any_work(argv, monkeypatch, capsys):
    import slmlib.tooling.bench
    import slmlib.tooling.course

    def no_work(*a, **k):
        raise AssertionError("the work started before the output folder was checked")

    monkeypatch.setattr(slmlib.tooling.bench, "run_benchmarks", no_work)
    monkeypatch.setattr(slmlib.tooling.course, "run_course", no_work)
    _no_training(monkeypatch)
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, argv[argv.index(next(a for a in argv if a in ("--dest", "--out", "--results")))],
                          "/sys")


def test_a_write_to_a_place_it_cannot_write_is_a_course_error(tmp_path):
    from slmlib.paths import atomic_write

    for place in (tmp_path, f"{UNWRITABLE}/x.json"):
        with pytest.raises(CourseError, match="cannot write") as err:
            atomic_write(place, lambda tmp: open(tmp, "w").write("x"))
        assert isinstance(err.value, OSError)  # code that falls back on an OSError still does


def test_a_corrupt_solution_notebook_is_one_line(tmp_path, monkeypatch, capsys):
    import slmlib.exercises

    (tmp_path / "ex01_broken.ipynb").write_text('{"cells": [')
    monkeypatch.setattr(slmlib.exercises, "SOLUTIONS_DIR", tmp_path)

    def no_build(*a, **k):
        raise AssertionError("built exercises from a corrupt solution notebook")

    monkeypatch.setattr(slmlib.exercises, "build_exercises", no_build)
    code, _, err = cli(capsys, "exercises", "build")
    assert_one_line_error(code, err, "ex01_broken.ipynb")


def test_show_probabilities_with_a_negative_k(little, tmp_path, monkeypatch):
    import slmlib.widgets as Wd

    model, vocab, cfg = little
    with pytest.raises(CourseError, match="k=-3"):
        next_token_table(model, vocab, "Once", k=-3)
    path = save_model(model, tmp_path / "m.pt", cfg, vocab, update_index=False)
    monkeypatch.setattr(Wd, "saved_models", lambda models_dir: {"ultra_tiny (20 stories)": path})
    pg = Wd.GenerationPlayground(tmp_path)
    assert pg.show_probabilities(k=-3) is None and "k=-3" in pg.text.value
