"""The command line, end to end, on a tiny run: `train` and `test` in subprocesses, like a user would type them;
reading the trained model and the one-line errors in-process (tests/cli_support.py: main() as `python -m slmlib`
calls it, without a second or two of importing torch for each)."""
import json
import os
import subprocess
import sys

import pytest

from cli_support import cli

pytestmark = pytest.mark.slow  # `python -m slmlib train` and `test` in subprocesses (a second or more each for torch)


def run(*args, env=None, check=True):
    r = subprocess.run([sys.executable, "-m", "slmlib", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    env = {"SLM_MODELS_DIR": str(root / "models"), "SLM_OUTPUTS_DIR": str(root / "outputs")}
    r = run("train", "--level", "ultra_tiny", "--max-iters", "20", "--out", str(root / "models"), "--force",
            env=env)
    assert "ultra_tiny" in r.stdout
    return root, env


def test_a_quick_try_never_replaces_the_levels_model(trained):
    root, env = trained
    own = root / "models" / "model_ultra_tiny_100_stories.pt"
    before = own.read_bytes()
    r = run("train", "--level", "ultra_tiny", "--max-iters", "5", "--out", str(root / "models"),
            "--results", str(root / "quick_try"), env=env)
    assert own.read_bytes() == before
    saved = list((root / "models" / "experiments").glob("model_ultra_tiny_100_stories__*max_iters=5*.pt"))
    assert len(saved) == 1, r.stdout


def test_help_on_every_subcommand():
    for cmd in ("train", "test", "generate", "info", "data", "course"):
        assert "usage:" in run(cmd, "--help").stdout


def test_train_writes_model_index_and_results(trained):
    root, _ = trained
    assert (root / "models" / "model_ultra_tiny_100_stories.pt").is_file()
    results = json.loads((root / "outputs" / "ladder_results.json").read_text())
    assert results["levels"][0]["level"] == "ultra_tiny" and results["levels"][0]["max_iters"] == 20
    assert (root / "outputs" / "training_curves.png").stat().st_size > 1000


@pytest.mark.filterwarnings("ignore:.*trained with other settings")  # the fixture trains 20 steps, on purpose
def test_generate_and_info_and_test(trained, capsys):
    root, env = trained
    ckpt = root / "models" / "model_ultra_tiny_100_stories.pt"
    code, out, err = cli(capsys, "generate", "--checkpoint", ckpt, "--prompt", "Once upon a time",
                         "--max-new-tokens", "10")
    assert code == 0 and out.startswith("Once upon a time"), err
    code, out, err = cli(capsys, "info", "--models", root / "models")
    assert code == 0 and "ultra_tiny" in out, err
    r = run("test", "--models", str(root / "models"), "--fresh", "10", env=env)
    assert "ultra_tiny" in r.stdout
    assert json.loads((root / "outputs" / "test_results_new_data.json").read_text())["models"][0]["test_loss"] > 0


@pytest.mark.parametrize("args, message", [
    (["train", "--level", "huge"], "unknown level 'huge'; valid levels"),
    (["generate", "--level", "large", "--prompt", "Hi"], "python -m slmlib train --level large"),
    (["generate", "--prompt", "Hi"], "exactly one of --level"),
    (["test", "--models", "/nonexistent"], "no trained models"),
    # not an abbreviation of --seed-settings (a switch that takes no number): refused, named
    (["train", "--level", "tiny", "--seed", "3"], "unrecognized arguments: --seed 3"),
])
def test_bad_input_is_one_line_without_traceback(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLM_MODELS_DIR", str(tmp_path))
    code, _, err = cli(capsys, *args)  # an exception escaping main() would fail the test here
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.filterwarnings("ignore:.*trained with other settings")  # the fixture trains 20 steps, on purpose
def test_empty_prompt_and_corrupt_checkpoint(trained, tmp_path, capsys):
    root, env = trained
    ckpt = root / "models" / "model_ultra_tiny_100_stories.pt"
    code, _, err = cli(capsys, "generate", "--checkpoint", ckpt, "--prompt", "  ")
    assert code == 2 and "prompt is empty" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(ckpt.read_bytes()[:500])
    code, _, err = cli(capsys, "generate", "--checkpoint", bad, "--prompt", "Hi")
    assert code == 2 and "not a readable checkpoint" in err and "Traceback" not in err
