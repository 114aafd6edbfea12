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
