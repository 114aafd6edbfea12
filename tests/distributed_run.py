"""One rank of the two-process test (tests/test_scale_out.py starts two, as torchrun would).

    python tests/distributed_run.py CORPUS OUT      with RANK, WORLD_SIZE, MASTER_ADDR, ... set

Trains the tiny config three times: uninterrupted; stopped by a Ctrl-C that only rank 0 gets;
resumed. Prints one JSON line with what the test compares.
"""
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

from slmlib.checkpoint import resume_path_for
from slmlib.config import LevelConfig
from slmlib.train import train


STORIES = 1200  # the test's whole TinyStories train file


def tiny_config(corpus: str) -> LevelConfig:
    """tests/conftest.py's tiny_config on a prepared corpus: global batch 4, micro-batches of 1."""
    return LevelConfig("ultra_tiny", 1, stories=STORIES, n_layer=1, n_head=2, n_embd=16, max_iters=30,
                       batch_size=4, block_size=32, eval_interval=10, eval_windows=16, warmup_iters=5,
                       lr=1e-2, corpus=corpus, micro_batch_size=1)


def ctrl_c_on_rank_0_at(step):
    def callback(history):  # callbacks run on rank 0 only: the other rank never gets this signal
        if history.records[-1]["iter"] == step:
            os.kill(os.getpid(), signal.SIGINT)
    return callback


def digest(model) -> str:
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()


if __name__ == "__main__":
    corpus, out = sys.argv[1], Path(sys.argv[2])
    cfg = tiny_config(corpus)
    full = train(cfg, out=out / "full.pt", device="cpu", progress=False)
    part = train(cfg, out=out / "part.pt", device="cpu", progress=False, callbacks=[ctrl_c_on_rank_0_at(10)])
    resumed = train(cfg, out=out / "part.pt", device="cpu", progress=False, resume=resume_path_for(out / "part.pt"))
    print(json.dumps({"rank": int(os.environ["RANK"]), "train_loss": full.train_loss, "val_loss": full.val_loss,
                      "digest": digest(full.model), "stopped": [part.status, part.records[-1]["iter"]],
                      "resumed": [resumed.status, resumed.train_loss, resumed.val_loss]}))
