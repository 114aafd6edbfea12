"""Work that tests/conftest.py runs in background processes while the session's other tests run.

Here, not in conftest.py, so that a spawned worker process can import it by name.
"""
import os


def set_env(env: dict) -> None:
    os.environ.update(env)


def train_level(name: str):
    """One level trained at its default settings, as its lesson does, and its recital test:
    (history without the model and data, recital, the data's entropy floors)."""
    from slmlib.config import get_level
    from slmlib.data import load_data
    from slmlib.tooling.lesson_check import level_recital
    from slmlib.train import train

    cfg = get_level(name)
    data = load_data(cfg)
    history = train(cfg, data=data, save=False, progress=False, device="cpu")
    recital = level_recital(name, history.model, data.vocab, data)
    history.model = history.data = None  # the checks read the records; the weights need not cross processes
    return history, recital, data.floor
