import os
import signal
import threading

import pytest
import torch

from slmlib.checkpoint import load_model, read_index, resume_path_for
from slmlib.data import load_data
from slmlib.train import History, TrainingDivergedError, lr_at, train


@pytest.fixture
def data(tiny_config):
    return load_data(tiny_config)


def test_loss_goes_down_and_model_is_saved(tiny_config, data, tmp_path):
    out = tmp_path / "m.pt"
    h = train(tiny_config.replace(max_iters=60), data=data, out=out, progress=False)
    assert h.status == "completed"
    assert h.val_loss[-1] < h.val_loss[0] - 1.0 and h.train_loss[-1] < h.train_loss[0] - 1.0
    assert set(h.final) >= {"train_loss", "val_loss", "gap"}
    assert [r["iter"] for r in h.records] == [0, 10, 20, 30, 40, 50, 60]
    model, info = load_model(out)
    assert info["history"].final == h.final and info["config"].max_iters == 60
    assert read_index(tmp_path)["models"]["m.pt"]["val_loss"] == h.final["val_loss"]


def test_same_seed_same_losses(tiny_config, data, tmp_path):
    a = train(tiny_config, data=data, out=tmp_path / "a.pt", progress=False)
    b = train(tiny_config, data=data, out=tmp_path / "b.pt", progress=False)
    c = train(tiny_config.replace(seed=7), data=data, out=tmp_path / "c.pt", progress=False)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert a.train_loss != c.train_loss


def test_callbacks_see_every_evaluation(tiny_config, data, tmp_path):
    seen = []
    train(tiny_config, data=data, out=tmp_path / "m.pt", progress=False,
          callbacks=[lambda h: seen.append(h.records[-1]["iter"])])
    assert seen == [0, 10, 20, 30]


def test_nan_loss_stops_with_advice_and_keeps_history(tiny_config, data, tmp_path):
    with pytest.raises(TrainingDivergedError, match="Lower the learning rate") as err:
        train(tiny_config.replace(lr=1e6, warmup_iters=0), data=data, out=tmp_path / "m.pt", progress=False)
    assert isinstance(err.value.history, History) and err.value.history.records
    assert not (tmp_path / "m.pt").exists()


def _interrupt_at(step):
    def callback(history):
        if history.records[-1]["iter"] == step:
            raise KeyboardInterrupt
    return callback


def test_interrupt_saves_resumable_state_and_resume_is_exact(tiny_config, data, tmp_path):
    out = tmp_path / "m.pt"
    full = train(tiny_config, data=data, out=tmp_path / "full.pt", progress=False)
    part = train(tiny_config, data=data, out=out, progress=False, callbacks=[_interrupt_at(20)])
    assert part.status == "interrupted" and part.records[-1]["iter"] == 20
    assert resume_path_for(out).is_file() and not out.exists()
    done = train(tiny_config, data=data, out=out, progress=False, resume=resume_path_for(out))
    assert done.status == "completed"
    assert done.train_loss == full.train_loss and done.val_loss == full.val_loss
    assert not resume_path_for(out).exists()  # consumed


def test_ctrl_c_stops_at_a_step_boundary(tiny_config, data, tmp_path):
    def press_ctrl_c(history):
        if history.records[-1]["iter"] == 10:
            os.kill(os.getpid(), signal.SIGINT)  # what the kernel's stop button sends
    h = train(tiny_config, data=data, out=tmp_path / "m.pt", progress=False, callbacks=[press_ctrl_c])
    assert h.status == "interrupted" and h.resume_path
    assert threading.current_thread() is threading.main_thread()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_resume_refuses_a_finished_model(tiny_config, data, tmp_path):
    from slmlib.checkpoint import CheckpointError

    train(tiny_config, data=data, out=tmp_path / "m.pt", progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_config, data=data, out=tmp_path / "x.pt", progress=False, resume=tmp_path / "m.pt")


def test_lr_schedule_warms_up_and_decays(tiny_config):
    cfg = tiny_config.replace(max_iters=100, warmup_iters=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(50, cfg.replace(lr_schedule="constant")) == 1.0


def test_bf16_precision_runs(tiny_config, data, tmp_path):
    h = train(tiny_config.replace(max_iters=10), data=data, out=tmp_path / "m.pt", progress=False,
              precision="bf16")
    assert torch.isfinite(torch.tensor(h.final["val_loss"]))


@pytest.mark.parametrize("stop_after_batches", [7, 13])
def test_resume_after_ctrl_c_at_any_step_gives_bit_identical_weights(tiny_config, data, tmp_path, monkeypatch,
                                                                     stop_after_batches):
    import slmlib.step as train_module  # the one training step draws the batches

    full = train(tiny_config, data=data, out=tmp_path / "full.pt", progress=False)
    real_get_batch, calls = train_module.get_batch, []

    def get_batch_then_ctrl_c(*args, **kwargs):  # Ctrl-C lands in the middle of a step
        calls.append(1)
        if len(calls) == stop_after_batches:
            os.kill(os.getpid(), signal.SIGINT)
        return real_get_batch(*args, **kwargs)

    monkeypatch.setattr(train_module, "get_batch", get_batch_then_ctrl_c)
    out = tmp_path / "m.pt"
    part = train(tiny_config, data=data, out=out, progress=False)
    assert part.status == "interrupted"
    monkeypatch.setattr(train_module, "get_batch", real_get_batch)
    done = train(tiny_config, data=data, out=out, progress=False, resume=resume_path_for(out))
    resumed, _ = load_model(out)
    uninterrupted, _ = load_model(tmp_path / "full.pt")
    for (name, a), b in zip(resumed.state_dict().items(), uninterrupted.state_dict().values()):
        assert torch.equal(a, b), name
    assert done.val_loss == full.val_loss and done.best == full.best


def test_best_validation_weights_are_kept_beside_the_final_ones(tiny_config, data, tmp_path):
    from slmlib.train import evaluate_loss
    from slmlib.data import eval_windows

    cfg = tiny_config.replace(max_iters=60, lr=3e-2, stories=5)  # 5 stories: overfits fast
    h = train(cfg, data=load_data(cfg), out=tmp_path / "m.pt", progress=False)
    best = min(h.records, key=lambda r: r["val_loss"])
    assert h.best == {k: best[k] for k in ("iter", "train_loss", "val_loss")}
    assert h.overfit_by == pytest.approx(h.records[-1]["val_loss"] - best["val_loss"], abs=1e-4)
    assert h.final["val_loss"] == h.records[-1]["val_loss"]  # one number per quantity
    best_model, info = load_model(tmp_path / "m.pt", weights="best")
    val = eval_windows(h.data.val, cfg.eval_windows, cfg.block_size)
    assert evaluate_loss(best_model, val) == pytest.approx(h.best["val_loss"], abs=1e-3)
    assert info["history"].best == h.best


def test_other_settings_never_replace_a_levels_model(tmp_path, monkeypatch):
    from slmlib.checkpoint import default_path, model_path
    from slmlib.config import get_level
    from slmlib.train import ProtectedModelError

    level = get_level("ultra_tiny")
    quick = level.replace(max_iters=3, eval_interval=3, eval_windows=4)
    data = load_data(level)
    own = default_path(level, tmp_path)
    own.write_bytes(b"the level's trained model")
    h = train(quick, data=data, out=tmp_path, progress=False)  # a folder: the run picks its name
    assert h.path == model_path(quick, tmp_path) and "experiments" in h.path.parts
    assert "max_iters=3" in h.path.name and own.read_bytes() == b"the level's trained model"
    with pytest.raises(ProtectedModelError, match="overwrite=True"):
        train(quick, data=data, out=own, progress=False)
    assert own.read_bytes() == b"the level's trained model"
    train(quick, data=data, out=own, progress=False, overwrite=True)
    assert own.with_name(own.stem + ".previous.pt").read_bytes() == b"the level's trained model"
    assert load_model(own)[1]["config"] == quick


def test_an_unwritable_place_fails_before_the_first_step(tiny_config, data, tmp_path):
    from slmlib.checkpoint import CheckpointError

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    seen = []
    with pytest.raises(CheckpointError, match="a file is in the way"):
        train(tiny_config, data=data, out=blocker / "m.pt", progress=False, callbacks=[seen.append])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(CheckpointError, match="not writable"):
            train(tiny_config, data=data, out=locked / "m.pt", progress=False, callbacks=[seen.append])
    finally:
        locked.chmod(0o700)
    assert seen == []  # not a single evaluation ran


def test_a_failing_save_keeps_the_trained_weights(tiny_config, data, tmp_path, monkeypatch):
    import slmlib.checkpoint as checkpoint
    from slmlib.checkpoint import CheckpointError

    out = tmp_path / "m.pt"
    out.write_bytes(b"previous model")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_checkpoint", disk_full)
    with pytest.raises(CheckpointError, match="nothing is lost") as err:
        train(tiny_config, data=data, out=out, progress=False)
    rescued = str(err.value).split("the trained model is in ")[1].split(".pt")[0] + ".pt"
    monkeypatch.undo()
    assert load_model(rescued)[1]["history"].status == "completed"
    assert out.read_bytes() == b"previous model"
