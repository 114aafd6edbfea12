"""Beyond one laptop (issue 15): a prepared TinyStories corpus read through a memory map, and
training on two processes with DistributedDataParallel (gloo), as torchrun runs it.

The fixture is a small TinyStories in the real file format: the first 1,200 stories of the
course's train split as the train file, 300 validation stories as the valid file.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import slmlib.prepare as prepare
from slmlib.__main__ import main
from slmlib.checkpoint import load_model
from slmlib.distributed import Ranks
from slmlib.errors import UsageError
from slmlib.kv_cache import generate_cached
from slmlib.model import TinyGPT
from slmlib.data import (TINYSTORIES_FILES, format_stories, get_batch, load_tinystories, read_stories,
                         split_path, write_atomic)
from slmlib.prepared import PreparedCorpusError, TokenFile, load_prepared
from slmlib.train import train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from distributed_run import STORIES as TRAIN_STORIES, tiny_config  # noqa: E402  (what both ranks train)

VALID_STORIES, CHUNK = 300, 300


@pytest.fixture(scope="module")
def tinystories(tmp_path_factory):
    """(text folder, prepared folder, prepare's summary)."""
    root = tmp_path_factory.mktemp("tinystories")
    src, dest = root / "text", root / "prepared"
    write_atomic(src / TINYSTORIES_FILES["train"], format_stories(read_stories(split_path("train"), TRAIN_STORIES)))
    write_atomic(src / TINYSTORIES_FILES["valid"], format_stories(read_stories(split_path("val"), VALID_STORIES)))
    summary = prepare.prepare_tinystories(src, dest, workers=2, chunk_stories=CHUNK, progress=False)
    return src, dest, summary


def test_prepare_writes_flat_uint16_token_files_and_their_counts(tinystories):
    _, dest, summary = tinystories
    meta = json.loads((dest / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and not (dest / ".parts").exists()
    for split, stories in (("train", TRAIN_STORIES), ("valid", VALID_STORIES)):
        ids = np.fromfile(dest / f"{split}.bin", dtype=np.uint16)
        assert meta["splits"][split]["stories"] == stories == int((ids == 50256).sum())
        assert meta["splits"][split]["tokens"] == ids.size and ids[-1] == 50256
    assert summary["train"] == {"stories": TRAIN_STORIES, "tokens": meta["splits"]["train"]["tokens"],
                                "chunks": TRAIN_STORIES // CHUNK, "tokenized": TRAIN_STORIES // CHUNK, "reused": 0}


def _gpt2_ids(vocab, compact: torch.Tensor) -> torch.Tensor:
    return torch.tensor(vocab.gpt2_ids)[compact]


def test_the_memory_map_gives_the_same_batches_as_the_stories_in_memory(tinystories):
    src, dest, _ = tinystories
    for n in (500, TRAIN_STORIES):  # a cut inside a chunk, and all of it
        disk, memory = load_prepared(dest, n), load_tinystories(src, n)
        assert isinstance(disk.train, TokenFile)
        for split in ("train", "val", "test"):
            on_disk, in_memory = getattr(disk, split), getattr(memory, split)
            assert torch.equal(_gpt2_ids(disk.vocab, on_disk[torch.arange(on_disk.numel())]),
                               _gpt2_ids(memory.vocab, in_memory)), (n, split)
    assert disk.vocab == memory.vocab
    for seed in (0, 1):
        a = get_batch(disk.train, 8, 32, torch.Generator().manual_seed(seed))
        b = get_batch(memory.train, 8, 32, torch.Generator().manual_seed(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_training_on_the_prepared_corpus_equals_training_on_the_text(tinystories, tmp_path):
    src, dest, _ = tinystories
    cfg = tiny_config(str(dest)).replace(micro_batch_size=0, max_iters=10)
    from_disk = train(cfg, out=tmp_path / "disk.pt", progress=False)
    from_text = train(cfg.replace(corpus=str(src)), out=tmp_path / "text.pt", progress=False)
    assert from_disk.data.stats()["source"].startswith("TinyStories, prepared")
    assert from_disk.train_loss == from_text.train_loss and from_disk.val_loss == from_text.val_loss
    assert from_disk.val_loss[-1] < from_disk.val_loss[0] - 0.5


def test_an_interrupted_prepare_continues_without_redoing_finished_chunks(tinystories, tmp_path, monkeypatch):
    src, dest, _ = tinystories
    again = tmp_path / "prepared"

    def ctrl_c_before_joining(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(prepare, "_join", ctrl_c_before_joining)
        with pytest.raises(KeyboardInterrupt):
            prepare.prepare_tinystories(src, again, workers=2, chunk_stories=CHUNK, progress=False)
    parts = sorted((again / ".parts" / "train").glob("*.bin"))
    assert len(parts) == TRAIN_STORIES // CHUNK and not (again / "meta.json").exists()
    parts[1].unlink()  # as if the interrupt came before this chunk was done
    summary = prepare.prepare_tinystories(src, again, workers=2, chunk_stories=CHUNK, progress=False)
    assert (summary["train"]["tokenized"], summary["train"]["reused"]) == (1, len(parts) - 1)
    for name in ("train.bin", "valid.bin", "meta.json"):
        assert (again / name).read_bytes() == (dest / name).read_bytes(), name
    assert prepare.prepare_tinystories(src, again, progress=False, chunk_stories=CHUNK) == {}  # done already


def test_prepared_corpus_problems_say_how_to_fix_them(tinystories, tmp_path, capsys):
    src, dest, _ = tinystories
    with pytest.raises(PreparedCorpusError, match=f"holds {TRAIN_STORIES:,} training stories"):
        load_prepared(dest, TRAIN_STORIES + 1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_bytes((dest / "meta.json").read_bytes())
    with pytest.raises(PreparedCorpusError, match="train.bin is missing.*prepare-tinystories"):
        load_prepared(broken, 10)
    assert main(["data", "prepare-tinystories", "--src", str(tmp_path / "nowhere"), "--dest", str(broken)]) == 2
    assert "not found" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(corpus: Path, out: Path) -> list[tuple[dict, str]]:
    """(the JSON a rank printed last, all it printed) for each rank."""
    """Start tests/distributed_run.py as ranks 0 and 1, with the variables torchrun would set."""
    env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    procs = [subprocess.Popen([sys.executable, str(HERE / "distributed_run.py"), str(corpus), str(out)],
                              env=env | {"RANK": str(r), "LOCAL_RANK": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(2)]
    try:
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    return [(json.loads(stdout.strip().splitlines()[-1]), stdout) for stdout, _ in outputs]


@pytest.mark.slow
def test_two_gloo_ranks_track_one_process_with_the_same_global_batch(tinystories, tmp_path):
    _, dest, _ = tinystories
    (rank0, said0), (rank1, said1) = _two_ranks(dest, tmp_path)
    assert rank0["digest"] == rank1["digest"]  # DDP averaged the gradients: the two copies stayed identical
    assert "Training interrupted" in said0 and "Training interrupted" not in said1  # rank 0 alone speaks

    cfg = tiny_config(str(dest))
    alone = train(cfg.replace(micro_batch_size=0), out=tmp_path / "alone.pt", progress=False)
    # Same start and global batch, other windows (each rank draws its own): close, not equal.
    assert rank0["val_loss"][0] == alone.val_loss[0]
    assert alone.val_loss[-1] < alone.val_loss[0] - 1.0
    for a, b in zip(rank0["val_loss"], alone.val_loss):
        assert abs(a - b) < 0.15, (rank0["val_loss"], alone.val_loss)

    model, info = load_model(tmp_path / "full.pt")  # rank 0's checkpoint, read by single-process code
    assert info["history"].parallel == {"world_size": 2, "global_batch": 4, "micro_batch": 1,
                                        "accumulation_steps": 2, "backend": "gloo", "device": "cpu"}
    assert info["history"].val_loss == rank0["val_loss"] and alone.parallel["world_size"] == 1

    # Ctrl-C on rank 0 alone stopped both ranks at the same step; the resumed run is exact.
    assert rank0["stopped"] == rank1["stopped"] == ["interrupted", 10]
    assert rank0["resumed"] == ["completed", rank0["train_loss"], rank0["val_loss"]]


def test_gradient_accumulation_takes_the_same_steps_as_one_big_batch(tinystories, tmp_path):
    _, dest, _ = tinystories
    cfg = tiny_config(str(dest)).replace(max_iters=10)
    whole = train(cfg.replace(micro_batch_size=0), out=tmp_path / "whole.pt", progress=False)
    in_fours = train(cfg.replace(micro_batch_size=1), out=tmp_path / "micro.pt", progress=False)
    assert in_fours.parallel["accumulation_steps"] == 4 and whole.parallel["accumulation_steps"] == 1
    assert in_fours.val_loss == pytest.approx(whole.val_loss, abs=2e-4)
    with pytest.raises(UsageError, match="micro_batch_size=3 does not divide"):
        train(cfg.replace(micro_batch_size=3), out=tmp_path / "bad.pt", progress=False)


def test_a_resume_file_of_two_ranks_is_refused_by_one_process():
    with pytest.raises(UsageError, match="saved by a run of 2 process.*torchrun"):
        Ranks().own_rng_states({"world_size": 2, "rank_rng_states": [[None, None]] * 2}, "m.resume.pt")


@pytest.mark.parametrize("temperature, top_k", [(1.0, 40), (0.0, None)])
def test_the_kv_cache_gives_the_same_tokens_as_generate(temperature, top_k):
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    prompts = torch.tensor([[3, 4, 5], [7, 8, 9]])
    for n in (10, 30):  # within block_size, and past it (the context is cropped)
        reference = model.generate(prompts, n, temperature=temperature, top_k=top_k, seed=1)
        assert torch.equal(generate_cached(model, prompts, n, temperature=temperature, top_k=top_k, seed=1),
                           reference)
    stop = int(reference[0, 5])
    assert torch.equal(generate_cached(model, prompts[:1], 30, temperature, top_k, stop_token=stop, seed=1),
                       model.generate(prompts[:1], 30, temperature, top_k, stop_token=stop, seed=1))
    with pytest.raises(UsageError, match="temperature=-1 is not allowed"):  # the same check as generate()
        generate_cached(model, prompts, 3, temperature=-1)
