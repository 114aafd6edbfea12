"""Would fewer steps keep the lesson? Train a level at N steps (not saved) and print what the lesson check reads.

    .venv/bin/python scripts/shorter_level.py ultra_tiny 800 1000

One line of JSON per run: CPU seconds (one thread), the best validation loss and its step, the rise after it,
the final losses and gap, and for levels 1-2 the recital (words right of 20 on training and unseen stories,
share of training stories recited word for word). The README's teacher's guide quotes these numbers.
"""
import json
import sys
import time

import torch

from slmlib.config import get_level
from slmlib.data import load_data
from slmlib.tooling.lesson_check import RECITAL, level_recital
from slmlib.train import train


def main(level: str, steps: list[int]) -> None:
    torch.set_num_threads(1)  # comparable with the course's one-thread kernels
    for n in steps:
        cfg = get_level(level).replace(max_iters=n)
        data = load_data(cfg)
        start = time.process_time()
        h = train(cfg, data=data, save=False, progress=False, device="cpu")
        row = {"level": cfg.name, "steps": n, "cpu_s": round(time.process_time() - start, 1),
               "best_val": round(h.best["val_loss"], 3), "best_step": h.best["iter"], "rise": round(h.overfit_by, 3),
               "train": round(h.final["train_loss"], 3), "val": round(h.final["val_loss"], 3), "gap": round(h.gap, 3)}
        if cfg.name in RECITAL:
            r = level_recital(cfg.name, h.model, data.vocab, data)
            row.update(recited_words=r["train"]["matched_words"], word_for_word=r["train"]["exact_share"],
                       unseen_words=r["unseen"]["matched_words"])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], [int(a) for a in sys.argv[2:]])
