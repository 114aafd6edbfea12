"""The benchmark's quick mode: same code path as `make bench`, tiny step counts.

Only sanity checks on the numbers: timings themselves are too noisy to assert on.
"""
import json

import pytest

from slmlib.tooling.bench import PROFILE_BUCKETS
from slmlib.config import LEVELS


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(bench_run):
    out_dir, future = bench_run  # run_benchmarks(quick=True, out_dir=out_dir) in the session's pool (tests/conftest.py)
    res = future.result()
    [json_path] = list(out_dir.glob("*.json"))
    assert json_path.with_suffix(".md").is_file()
    saved = json.loads(json_path.read_text())
    assert saved == json.loads(json.dumps(res))
    assert {"machine", "ladder", "throughput", "peak", "mfu", "generation", "quality", "profile",
            "targets", "flops_formula", "kv_cache"} <= set(saved)
    names = list(LEVELS)

    m = saved["machine"]
    assert m["logical_cores"] >= 1 and m["torch_threads"] >= 1 and m["cpu_model"] and m["torch_version"]

    ladder = saved["ladder"]
    assert [r["level"] for r in ladder["levels"]] == names
    assert ladder["total_s"] > 0
    for r in ladder["levels"]:
        assert r["wall_s"] > 0 and r["val_loss"] > 0 and r["train_loss"] > 0
        assert abs(r["gap"] - (r["val_loss"] - r["train_loss"])) < 1e-3

    assert [r["level"] for r in saved["throughput"]] == names
    for r in saved["throughput"]:
        assert r["vocab_full"] == 50257 and r["vocab_compact"] < r["vocab_full"]
        assert r["compact_tok_s"] > 0 and r["full_tok_s"] > 0
        assert r["ratio"] > 1, r  # the compact vocabulary is faster at every level

    assert saved["peak"]["fp32_flops"] > 0 and saved["peak"]["bf16_flops"] > 0
    for r in saved["mfu"]:
        assert r["flops_per_token"] > 0 and 0 < r["mfu"] < 1, r

    for r in saved["generation"]:
        assert r["tok_s"] > 0 and r["new_tokens"] > 0 and r["kv_cache"] is False

    assert [r["model"] for r in saved["kv_cache"]] == ["large", "tinystories_gpu (untrained)"]
    for r in saved["kv_cache"]:
        assert r["same_tokens"] is True and r["cached_tok_s"] > 0 and r["uncached_tok_s"] > 0, r

    for r in saved["quality"]:
        assert r["val_floor"] > 0 and r["val_loss"] > r["val_floor"]

    for r in saved["profile"]:
        shares = [r[b] for b in PROFILE_BUCKETS]
        assert all(0 <= s <= 1 for s in shares) and abs(sum(shares) - 1) < 0.01
        assert r["matmul_fwd"] > 0 and r["matmul_bwd"] > 0
