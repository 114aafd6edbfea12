"""device="auto": the CPU for the course's models, a GPU (cuda, else mps) for big ones."""
import pytest
import torch

from slmlib import device as device_mod
from slmlib.config import LEVELS
from slmlib.device import GPU_MIN_PARAMS, auto_device, pick_device
from slmlib.model import TinyGPT

BIG = GPU_MIN_PARAMS
LEVEL_SIZES = [TinyGPT.from_config(cfg, 2_139).num_params() for cfg in LEVELS.values()]  # the real five


def test_the_threshold_is_far_above_the_largest_level():
    assert 1_000_000 < max(LEVEL_SIZES) < GPU_MIN_PARAMS / 5


def fake_gpus(monkeypatch, cuda: bool, mps: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: mps)


@pytest.mark.parametrize("cuda,mps", [(True, False), (False, True), (False, False)])
def test_course_models_stay_on_the_cpu_even_with_a_gpu(monkeypatch, cuda, mps):
    fake_gpus(monkeypatch, cuda, mps)
    assert pick_device("auto").type == "cpu"
    assert pick_device().type == "cpu"
    for n in LEVEL_SIZES:
        assert pick_device("auto", n_params=n).type == "cpu"


@pytest.mark.parametrize("cuda,mps,expected", [(True, False, "cuda"), (True, True, "cuda"),
                                               (False, True, "mps"), (False, False, "cpu")])
def test_big_models_go_to_the_gpu_cuda_first(monkeypatch, cuda, mps, expected):
    fake_gpus(monkeypatch, cuda, mps)
    assert pick_device("auto", n_params=BIG).type == expected
    assert pick_device("auto", n_params=BIG - 1).type == "cpu"


def test_the_reason_names_the_rule(monkeypatch):
    fake_gpus(monkeypatch, cuda=True, mps=False)
    dev, why = auto_device(1_083_520)
    assert dev.type == "cpu" and why.startswith("under 10,000,000 parameters: the CPU") and "device='cuda'" in why
    dev, why = auto_device(BIG)
    assert dev.type == "cuda" and why == "10,000,000 parameters or more: the cuda GPU"
    fake_gpus(monkeypatch, cuda=False, mps=False)
    assert "has none" in auto_device(BIG)[1] and "GPU" not in auto_device(5)[1]


def test_explicit_devices_are_checked(monkeypatch):
    fake_gpus(monkeypatch, cuda=False, mps=False)
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU; use device='cpu'"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="no Apple GPU; use device='cpu'"):
        pick_device("mps")
    with pytest.raises(ValueError, match="unknown device 'gpu'; use 'auto', 'cpu', 'cuda', 'mps'"):
        pick_device("gpu")


def test_train_module_still_exports_pick_device():
    from slmlib.train import pick_device as from_train

    assert from_train is pick_device
