"""The controlled experiment: rows, the law's fit, reuse of kept runs, and the class as the cluster."""
import json
import math

import pytest

from slmlib import sweep
from slmlib.__main__ import main
from slmlib.errors import UsageError

FLOOR = 0.63


def _run(stories, seed, best=None, rise=0.0, steps=sweep.SWEEP_CONFIG.max_iters, config=None, status="completed"):
    """A finished run as train_many returns it: val falls to `best` (by the law, if not given)."""
    best = best if best is not None else FLOOR + 5.0 * stories ** -0.3 + 0.01 * seed
    cfg = {**sweep.SWEEP_CONFIG.to_dict(), "stories": stories, "seed": seed, "max_iters": steps,
           **(config or {})}
    at = steps // 2 if rise else steps
    records = [{"iter": 0, "train_loss": 7.6, "val_loss": 7.6},
               {"iter": at, "train_loss": best - 0.5, "val_loss": best}]
    if rise:
        records.append({"iter": steps, "train_loss": best - 1.5, "val_loss": best + rise})
    return {"config": cfg, "records": records, "status": status, "seconds": 1.0,
            "train_tokens": 170 * stories, "floor": FLOOR}


def test_a_row_says_where_the_run_was_best_and_how_far_it_rose():
    row = sweep.sweep_row(_run(100, 1, best=4.0, rise=0.5))
    steps = sweep.SWEEP_CONFIG.max_iters
    assert (row["best_val"], row["best_step"], row["rise"], row["steps"]) == (4.0, steps // 2, 0.5, steps)
    assert row["gap_at_best"] == 0.5 and row["gap_at_end"] == 2.0
    assert sweep.turned_up(row)
    assert not sweep.turned_up(sweep.sweep_row(_run(100, 1, best=4.0)))  # best at the last step
    assert not sweep.turned_up(sweep.sweep_row(_run(100, 1, best=4.0, rise=0.1)))  # rose too little


@pytest.mark.parametrize("limit", [0.0, 0.4])
def test_the_law_is_recovered_from_points_on_it(limit):
    law = lambda n: FLOOR + limit + 5.0 * n ** -0.3  # noqa: E731
    rows = [sweep.sweep_row(_run(n, s, best=law(n))) for n in (100, 300, 1000, 3000, 10000) for s in (1, 2)]
    fit = sweep.fit_scaling_law(rows, FLOOR)
    assert fit["A"] == pytest.approx(limit, abs=0.01) and fit["beta"] == pytest.approx(0.3, abs=0.01)
    assert fit["r2"] > 0.999 and fit["beta_sd"] == pytest.approx(0.0, abs=1e-3)
    assert sweep.predict(fit, 2000) == pytest.approx(law(2000), abs=0.005)


def test_a_noisy_law_fits_worse():
    rows = [sweep.sweep_row(_run(n, 1, best=FLOOR + 5.0 * n ** -0.3 * (1.5 if i % 2 else 0.7)))
            for i, n in enumerate((100, 300, 1000, 3000))]
    assert sweep.fit_scaling_law(rows, FLOOR)["r2"] < 0.9


def test_kept_runs_are_reused_not_trained_again(tmp_path, monkeypatch, tiny_config):
    cfgs = [tiny_config.replace(stories=20, seed=s, max_iters=4, eval_interval=2) for s in (1, 2)]
    first = sweep.train_many(cfgs, jobs=1, progress=False, runs_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2

    def no_training(cfg, threads):
        raise AssertionError(f"trained {cfg.seed} again")

    monkeypatch.setattr(sweep, "_run_one", no_training)
    again = sweep.train_many(cfgs, jobs=1, progress=False, runs_dir=tmp_path)
    assert [r["records"] for r in again] == [r["records"] for r in first]
    changed = cfgs[0].replace(lr=1e-3)  # other settings: not the same run
    with pytest.raises(AssertionError, match="trained 1 again"):
        sweep.train_many([changed], jobs=1, progress=False, runs_dir=tmp_path)


def test_a_run_in_flight_elsewhere_is_waited_for_not_trained_twice(tmp_path, monkeypatch, tiny_config):
    """The course's worker beside the lessons and a lesson asking for the same run: one trains, one waits."""
    import threading

    from filelock import FileLock

    cfg = tiny_config.replace(stories=20, seed=1, max_iters=4, eval_interval=2)
    finished = sweep.train_many([cfg], jobs=1, progress=False, runs_dir=tmp_path / "elsewhere")[0]
    run_file = sweep.run_file(cfg, tmp_path)
    (tmp_path / ".locks").mkdir()
    lock = FileLock(str(tmp_path / ".locks" / f"{run_file.stem}.lock"))
    lock.acquire()  # "another process" is training this run

    def no_training(cfg, threads):
        raise AssertionError("trained a run that was in flight elsewhere")

    monkeypatch.setattr(sweep, "_run_one", no_training)
    got = []
    waiter = threading.Thread(target=lambda: got.extend(sweep.train_many([cfg], jobs=1, progress=False,
                                                                          runs_dir=tmp_path)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not got  # waiting for the lock, not training
    sweep.save_run(cfg, finished, tmp_path)  # the other process finishes and keeps its run
    lock.release()
    waiter.join(10)
    assert got and got[0]["records"] == finished["records"]


def _write(folder, name, run):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(run))


def test_collect_reports_duplicates_missing_cells_and_other_settings(tmp_path):
    for n in (*sweep.SWEEP_STORIES, sweep.HELD_OUT_STORIES):
        for s in (1, 2):
            if (n, s) != (500, 2):  # one cell missing
                _write(tmp_path, f"a-{n}-{s}.json", _run(n, s))
    _write(tmp_path, "copy.json", _run(100, 1))  # the same cell twice, same numbers
    _write(tmp_path / "bob", "clash.json", _run(200, 1, best=9.0))  # the same cell, other numbers
    _write(tmp_path, "other.json", _run(300, 1, config={"lr": 0.5}))  # another recipe
    _write(tmp_path, "stopped.json", _run(300, 2, status="interrupted"))
    (tmp_path / "junk.json").write_text("{not json")
    result, problems = sweep.collect(tmp_path)
    text = "\n".join(problems)
    assert "copy.json: a second copy of 100 stories, seed 1 (identical" in text
    assert "clash.json: a second copy of 200 stories, seed 1 (DIFFERENT numbers" in text
    assert "other.json: trained with other settings (lr)" in text
    assert "stopped.json: the run did not finish" in text
    assert "junk.json: not a sweep result" in text
    assert "missing cells (1): 500 stories seed 2" in text
    by_size = {s["stories"]: s for s in result["summary"]}
    assert by_size[200]["best_val"] < 9  # the clashing copy was not averaged in
    assert by_size[500]["seeds"] == 1 and by_size[100]["seeds"] == 2
    assert result["prediction"]["stories"] == sweep.HELD_OUT_STORIES and result["fit"]["r2"] > 0.99


def test_cells_split_the_sweep_between_students(tmp_path):
    cells = sweep.sweep_cells()
    assert len(cells) == len(set(cells)) == len(sweep.SWEEP_SEEDS) * (len(sweep.SWEEP_STORIES) + 1)
    shares = [cells[k::5] for k in range(5)]
    assert sorted(c for share in shares for c in share) == sorted(cells)
    with pytest.raises(UsageError, match="from 0 to 4"):
        sweep.run_cells(5, 5, tmp_path)
    with pytest.raises(UsageError, match="has only"):
        sweep.run_cells(30, 40, tmp_path)


def test_a_class_runs_cells_and_the_instructor_collects_them(tmp_path, capsys):
    """Two students run their cells of a (shrunk) sweep; the instructor merges the files."""
    base = sweep.SWEEP_CONFIG.replace(max_iters=4, eval_interval=2, eval_windows=4, block_size=32, batch_size=4)
    stories, held_out = (20, 40, 80), 60
    cells = sweep.sweep_cells((1, 2), stories, held_out)
    hand_in = tmp_path / "hand_in"
    for cfg_cell in cells[:5]:  # the class ran 5 of the 8 cells
        cfg = sweep.sweep_config(*cfg_cell, base)
        run = sweep.train_many([cfg], jobs=1, progress=False, runs_dir=tmp_path / "runs")[0]
        _write(hand_in, f"{cfg.stories}-{cfg.seed}.json", {"sweep_cell": True, **run})
    result, problems = sweep.collect(hand_in, base=base, held_out=held_out, stories=stories)
    assert any(p.startswith("missing cells (3)") for p in problems)
    assert sum(s["seeds"] for s in result["summary"]) + len(result["held_out_rows"]) == 5
    assert all(math.isfinite(s["best_val"]) for s in result["summary"])


def test_the_command_line_collects_and_refuses_half_a_cell(tmp_path, capsys):
    for n in sweep.SWEEP_STORIES:
        for s in (1, 2, 3):
            _write(tmp_path / "in", f"{n}-{s}.json", _run(n, s))
    assert main(["sweep", "--collect", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "missing cells (3)" in out and "R²" in out
    assert (tmp_path / "out" / "class_sweep.json").is_file() and (tmp_path / "out" / "class_sweep.png").is_file()
    assert main(["sweep", "--cell", "1"]) == 2  # a usage error
    assert "--cell and --of go together" in capsys.readouterr().err
