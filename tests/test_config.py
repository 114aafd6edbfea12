import pytest

from slmlib.config import LEVELS, UnknownLevelError, get_level, seed_settings


def test_lookup_by_name_number_and_errors():
    assert get_level("tiny") is LEVELS["tiny"]
    assert get_level(5).name == "large" and get_level("3").name == "small"
    assert get_level("Ultra-Tiny").name == "ultra_tiny"
    with pytest.raises(UnknownLevelError, match="valid levels: 1=ultra_tiny"):
        get_level("huge")
    with pytest.raises(UnknownLevelError):
        get_level(6)


def test_replace_and_round_trip():
    cfg = LEVELS["small"].replace(max_iters=7)
    assert cfg.max_iters == 7 and LEVELS["small"].max_iters != 7
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="unknown setting"):
        cfg.replace(learning_rate=1)


def test_seed_settings_are_the_seeds():
    cfg = seed_settings("large")
    assert (cfg.batch_size, cfg.lr, cfg.max_iters, cfg.lr_schedule) == (4, 1e-3, 2000, "constant")
    assert seed_settings(1).max_iters == 200
