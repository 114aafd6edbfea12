"""The allocator setting: on Linux (glibc) it is set once and does not change a run's numbers."""
import sys

import pytest

from slmlib import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_thresholds_are_set_on_linux():
    assert allocator.keep_freed_blocks() is True
    assert allocator.keep_freed_blocks() is True  # idempotent


def test_training_gives_the_same_losses_either_way(tiny_config, monkeypatch):
    from slmlib.train import train

    first = train(tiny_config, save=False, progress=False, device="cpu")
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr("slmlib.train.keep_freed_blocks", lambda: False)  # the default allocator settings
    second = train(tiny_config, save=False, progress=False, device="cpu")
    losses = lambda h: [(r["iter"], r["train_loss"], r["val_loss"]) for r in h.records]  # noqa: E731
    assert losses(first) == losses(second)
