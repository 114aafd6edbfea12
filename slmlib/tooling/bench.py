"""Speed benchmarks (issue 7): `python -m slmlib bench` or `make bench`.

One run measures, on this machine: the ladder's wall time and final losses, training
tokens/s with the compact vs the full 50,257-id GPT-2 vocabulary, the measured matmul peak
and the model FLOPs utilisation (MFU), generation speed, and where a training step's time
goes (torch.profiler). Results: benchmarks/results/<date>-<host>.json and .md.
Everything runs on the CPU: the course's machine, and the peak the MFU is measured against.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import statistics
import threading
import time
from pathlib import Path

import torch

from ..config import LEVELS, PRESETS, LevelConfig
from ..data import load_data, write_atomic
from ..tables import format_table
from ..kv_cache import generate_cached
from ..model import TinyGPT
from ..step import make_optimizer, train_step
from ..train import train

LADDER_TARGET_S = 180.0  # ladder < 3 minutes
RATIO_TARGET = 10.0  # compact >= 10x full vocabulary at the three smallest levels
MFU_TARGET = 0.5  # >= 50% of measured peak at the largest level
FLOPS_FORMULA = ("6*(N_non_embedding + n_embd*vocab) + 6*n_layer*n_embd*block_size "
                 "(matmul params fwd+bwd, the tied output layer, causal attention 12*L*C*T/2)")

# quick: the same code path with tiny step counts (the test; not numbers to report). The
# peak stays large in both: small or few matmuls under-measure it and MFU would exceed 1.
SETTINGS = {
    False: dict(warmup=5, timed=10, repeats=3, peak_sizes=(1024, 1536, 2048), peak_repeats=5,
                gen_tokens=200, kv_tokens=124, profile_steps=20, ladder={}),
    True: dict(warmup=1, timed=1, repeats=1, peak_sizes=(1024, 2048), peak_repeats=2,
               gen_tokens=8, kv_tokens=8, profile_steps=2,
               ladder=dict(max_iters=3, eval_interval=3, eval_windows=4)),
}


def machine_info() -> dict:
    cpu, flags = None, set()
    try:  # Linux: the marketing name and the instruction-set flags (is bf16 native?)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu is None:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    return {"hostname": socket.gethostname(), "cpu_model": cpu, "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_in_hardware": bool(flags & {"avx512_bf16", "amx_bf16"}),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()]}


def _cpu_times() -> list[int]:
    try:  # the aggregate "cpu" line: user nice system idle iowait irq softirq steal ...
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return []


class LoadWatch:
    """Samples the 1-minute load average during the run, and the CPU time a VM's host gave
    to others (steal): other work skews every number here, so the results say how busy it was."""

    def __init__(self, every_s: float = 5.0):
        self.samples, self._stop, self._cpu = [os.getloadavg()[0]], threading.Event(), _cpu_times()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s):
        while not self._stop.wait(every_s):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        d = [b - a for a, b in zip(self._cpu, _cpu_times())]
        return {"load_1min_max": round(max(self.samples), 2),
                "load_1min_mean": round(statistics.fmean(self.samples), 2),
                "cpu_steal_share": round(d[7] / sum(d), 4) if len(d) == 8 and sum(d) else None}


def matmul_peak(dtype: torch.dtype, sizes, repeats: int) -> float:
    """Best FLOP/s of torch.matmul on square matrices: the ceiling this machine reaches."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        c = torch.matmul(a, b)  # warm-up (allocations, library dispatch)
        for _ in range(repeats):
            t = time.perf_counter()
            torch.matmul(a, b, out=c)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def trainer(cfg: LevelConfig, data):
    """A model and a `step(n)` doing train()'s step exactly (slmlib.step.train_step), for timing."""
    torch.manual_seed(cfg.seed)
    model = TinyGPT.from_config(cfg, len(data.vocab))
    opt = make_optimizer(model, cfg)
    rng = torch.Generator().manual_seed(cfg.seed)
    model.train()

    def step(n: int) -> None:
        for _ in range(n):
            train_step(model, opt, data, cfg, cfg.lr, rng)
    return model, step


def flops_per_token(cfg: LevelConfig, model: TinyGPT) -> int:
    # num_params(non_embedding) leaves out the tied token embedding, so the output layer
    # (a real n_embd x vocab matmul) is added back; attention scores + weighted sum are
    # 2 matmuls of T x head_size per head: 12*L*C*T fwd+bwd, halved because it is causal.
    n = model.num_params(non_embedding=True) + cfg.n_embd * model.vocab_size
    return 6 * n + 6 * cfg.n_layer * cfg.n_embd * cfg.block_size


def throughput(cfg: LevelConfig, data_compact, data_full, s: dict) -> dict:
    """Training tokens/s, compact vs full vocabulary, interleaved so load drifts hit both."""
    runs = {"compact": trainer(cfg, data_compact), "full": trainer(cfg.replace(full_vocab=True), data_full)}
    for _, step in runs.values():
        step(s["warmup"])
    tps = {k: [] for k in runs}
    for r in range(s["repeats"]):
        for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):  # alternate who goes first
            t = time.perf_counter()
            runs[k][1](s["timed"])
            tps[k].append(s["timed"] * cfg.tokens_per_batch / (time.perf_counter() - t))
    c, f = statistics.median(tps["compact"]), statistics.median(tps["full"])
    return {"level": cfg.name, "tokens_per_step": cfg.tokens_per_batch,
            "vocab_compact": runs["compact"][0].vocab_size, "vocab_full": runs["full"][0].vocab_size,
            "compact_tok_s": round(c), "full_tok_s": round(f), "ratio": round(c / f, 2),
            "compact_runs": [round(x) for x in tps["compact"]], "full_runs": [round(x) for x in tps["full"]],
            "_trainer": runs["compact"]}


MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv"}
PROFILE_BUCKETS = ("matmul_fwd", "matmul_bwd", "attention", "cross_entropy", "optimizer", "other")


def _bucket(ev) -> str:
    """Which part of a step an op's own (self) time belongs to."""
    names, p = [], ev.cpu_parent
    while p is not None:
        names.append(p.name)
        p = p.cpu_parent
    if any(n.startswith("Optimizer.") or n == "clip_grad_norm" for n in names + [ev.name]):
        return "optimizer"  # AdamW step, zero_grad and the grad-norm clip
    if "scaled_dot_product" in ev.name or "flash_attention" in ev.name:
        return "attention"
    if "log_softmax" in ev.name or "nll_loss" in ev.name:
        return "cross_entropy"
    if ev.name in MATMUL_OPS:
        backward = any(n.startswith("autograd::engine::evaluate_function") for n in names)
        return "matmul_bwd" if backward else "matmul_fwd"
    return "other"


def profile_steps(level: str, step, n: int) -> dict:
    """Share of wall time per bucket over n steps; 'other' is the rest (elementwise ops,
    LayerNorm, GELU, embedding, autograd and Python overhead)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        step(n)
        wall = time.perf_counter() - t
    us, other_ops = dict.fromkeys(PROFILE_BUCKETS, 0.0), {}
    for ev in prof.events():
        b = _bucket(ev)
        us[b] += ev.self_cpu_time_total
        if b == "other":
            other_ops[ev.name] = other_ops.get(ev.name, 0.0) + ev.self_cpu_time_total
    share = {b: round(us[b] / 1e6 / wall, 3) for b in PROFILE_BUCKETS[:-1]}
    share["other"] = round(max(0.0, 1 - sum(share.values())), 3)
    top = sorted(other_ops.items(), key=lambda kv: -kv[1])[:5]  # what "other" mostly is
    return {"level": level, "steps": n, "ms_per_step": round(1000 * wall / n, 1), **share,
            "outside_ops": round(max(0.0, 1 - sum(us.values()) / 1e6 / wall), 3),  # Python, profiler
            "top_other_ops": {k: round(v / 1e6 / wall, 3) for k, v in top}}


def generation_speed(level: str, model: TinyGPT, vocab, n_tokens: int) -> dict:
    """Tokens/s sampling n_tokens after a short prompt (batch 1, seed 0). TinyGPT has no KV
    cache: every new token re-runs the model over the whole (cropped) context."""
    model.eval()
    idx = torch.tensor([vocab.encode("Once upon a time")], dtype=torch.long)
    model.generate(idx, 4, top_k=40, seed=0)  # warm-up
    t = time.perf_counter()
    out = model.generate(idx, n_tokens, top_k=40, seed=0)  # no stop token: exactly n_tokens
    dt = time.perf_counter() - t
    return {"level": level, "new_tokens": out.size(1) - idx.size(1), "seconds": round(dt, 3),
            "tok_s": round((out.size(1) - idx.size(1)) / dt, 1), "kv_cache": False}


def kv_cache_speed(name: str, model: TinyGPT, vocab, n_tokens: int, repeats: int) -> dict:
    """Tokens/s of generate() and generate_cached() (batch 1, top-k 40, seed 0), interleaved so
    load drifts hit both; median of the repeats. Both must give the same tokens."""
    model.eval()
    idx = torch.tensor([vocab.encode("Once upon a time")], dtype=torch.long)
    n_tokens = min(n_tokens, model.block_size - idx.size(1))  # the cache helps up to block_size
    runs = {"uncached": model.generate, "cached": lambda *a, **k: generate_cached(model, *a, **k)}
    tok_s, outputs = {k: [] for k in runs}, {}
    for r in range(repeats):
        for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            t = time.perf_counter()
            outputs[k] = runs[k](idx, n_tokens, top_k=40, seed=0)
            tok_s[k].append(n_tokens / (time.perf_counter() - t))
    u, c = statistics.median(tok_s["uncached"]), statistics.median(tok_s["cached"])
    return {"model": name, "params": model.num_params(), "block_size": model.block_size, "new_tokens": n_tokens,
            "uncached_tok_s": round(u, 1), "cached_tok_s": round(c, 1), "speedup": round(c / u, 2),
            "same_tokens": torch.equal(outputs["uncached"], outputs["cached"])}


def run_benchmarks(quick: bool = False, out_dir: Path | str = Path("benchmarks/results")) -> dict:
    from ..allocator import keep_freed_blocks
    from ..progress import progress_bar

    keep_freed_blocks()  # as train() does, so the raw step timings are those of training

    s, out_dir = SETTINGS[bool(quick)], Path(out_dir)
    levels = list(LEVELS.values())
    res = {"date": datetime.date.today().isoformat(), "quick": bool(quick), "machine": machine_info(),
           "settings": dict(s) | {"device": "cpu", "precision": "fp32"},
           "configs": {c.name: c.to_dict() for c in levels}}  # config.py changes; keep what ran
    watch = LoadWatch()
    bar = progress_bar(total=3 + 4 * len(levels), desc="bench", unit="task", dynamic_ncols=True)

    def task(name: str) -> None:
        bar.set_description(f"bench: {name}")

    def measure_peak(when: str) -> None:  # at the start and the end: a slow moment can't set it
        for dtype, key in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            task(f"matmul peak {key} ({when})")
            peak[f"{key}_flops_{when}"] = matmul_peak(dtype, s["peak_sizes"], s["peak_repeats"])
        bar.update()

    peak = {"sizes": list(s["peak_sizes"]), "bf16_in_hardware": res["machine"]["bf16_in_hardware"]}
    measure_peak("start")

    # 1. The ladder at default settings, timed as a student runs it (data loading included).
    ladder, trained, data = [], {}, {}
    t_all = time.perf_counter()
    for cfg in levels:
        task(f"ladder {cfg.name}")
        t = time.perf_counter()
        data[cfg.name] = load_data(cfg)
        h = train(cfg.replace(**s["ladder"]), data=data[cfg.name], device="cpu", progress=False, save=False)
        wall = time.perf_counter() - t
        trained[cfg.name] = h.model
        floor = data[cfg.name].floor.get("val")
        ladder.append({"level": cfg.name, "params": h.model.num_params(), "steps": h.records[-1]["iter"],
                       "wall_s": round(wall, 1), "train_loop_s": round(h.seconds, 1),
                       "tok_s": round(h.records[-1]["tokens"] / h.seconds),  # evals included
                       **{k: h.final[k] for k in ("train_loss", "val_loss", "gap")},
                       "val_floor": floor, "val_above_floor": round(h.final["val_loss"] - floor, 4)
                       if floor is not None else None})
        bar.update()
    res["ladder"] = {"levels": ladder, "total_s": round(time.perf_counter() - t_all, 1),
                     "target_s": LADDER_TARGET_S}
    res["ladder"]["met"] = res["ladder"]["total_s"] < LADDER_TARGET_S
    res["quality"] = [{k: r[k] for k in ("level", "val_loss", "val_floor", "val_above_floor")} for r in ladder]

    # 4. Generation with the models just trained.
    res["generation"] = []
    for cfg in levels:
        task(f"generate {cfg.name}")
        res["generation"].append(generation_speed(cfg.name, trained[cfg.name], data[cfg.name].vocab,
                                                  s["gen_tokens"]))
        bar.update()

    # The KV cache: the largest level as trained, and the GPU preset (untrained: speed only).
    task("KV cache")
    largest, preset = levels[-1], PRESETS["tinystories_gpu"]
    torch.manual_seed(preset.seed)
    preset_model = TinyGPT.from_config(preset, len(data[largest.name].vocab))
    res["kv_cache"] = [kv_cache_speed(largest.name, trained[largest.name], data[largest.name].vocab,
                                      s["kv_tokens"], s["repeats"]),
                       kv_cache_speed(f"{preset.name} (untrained)", preset_model, data[largest.name].vocab,
                                      s["kv_tokens"], s["repeats"])]
    bar.update()

    # 2, 3 and the profile: short timed runs, compact vs full vocabulary, then MFU.
    res["throughput"], res["mfu"], res["profile"] = [], [], []
    for cfg in levels:
        task(f"vocab speed {cfg.name}")
        row = throughput(cfg, data[cfg.name], load_data(cfg.replace(full_vocab=True)), s)
        model, step = row.pop("_trainer")
        res["throughput"].append(row)
        res["mfu"].append({"level": cfg.name, "flops_per_token": flops_per_token(cfg, model)})
        bar.update()
        task(f"profile {cfg.name}")
        res["profile"].append(profile_steps(cfg.name, step, s["profile_steps"]))
        bar.update()
    measure_peak("end")
    for key in ("fp32", "bf16"):
        peak[f"{key}_flops"] = max(peak[f"{key}_flops_start"], peak[f"{key}_flops_end"])
    res["peak"] = {k: (round(v) if isinstance(v, float) else v) for k, v in peak.items()}
    for row, tp in zip(res["mfu"], res["throughput"]):  # achieved FLOP/s / measured peak
        achieved = tp["compact_tok_s"] * row["flops_per_token"]
        row |= {"achieved_gflops": round(achieved / 1e9, 2), "peak_fp32_gflops": round(peak["fp32_flops"] / 1e9, 1),
                "mfu": round(achieved / peak["fp32_flops"], 4)}
    bar.close()

    ratios = {r["level"]: r["ratio"] for r in res["throughput"]}
    smallest = [c.name for c in levels[:3]]
    res["targets"] = {
        "ladder_under_180s": {"value_s": res["ladder"]["total_s"], "met": res["ladder"]["met"]},
        "ratio_10x_three_smallest": {"values": {k: ratios[k] for k in smallest},
                                     "met": all(ratios[k] >= RATIO_TARGET for k in smallest)},
        "mfu_50pct_largest": {"value": res["mfu"][-1]["mfu"], "met": res["mfu"][-1]["mfu"] >= MFU_TARGET}}
    res["flops_formula"] = FLOPS_FORMULA
    res["machine"]["load_avg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["machine"] |= watch.stop()

    md = to_markdown(res)
    name = f"{res['date']}-{res['machine']['hostname']}" + ("-quick" if quick else "")
    write_atomic(out_dir / f"{name}.json", json.dumps(res, indent=2) + "\n")
    write_atomic(out_dir / f"{name}.md", md)
    print(md)
    print(f"written: {out_dir / name}.json and .md")
    return res


def to_markdown(res: dict) -> str:
    m, p = res["machine"], res["peak"]
    t = res["targets"]
    lines = [f"# Benchmarks {res['date']} on {m['hostname']}" + (" (quick: not real numbers)" if res["quick"] else ""),
             "", f"{m['cpu_model']}, {m['usable_cores']} cores, torch {m['torch_version']} "
             f"({m['torch_threads']} threads, {m['cpu_capability']}), load average at start "
             f"{m['load_avg_1_5_15_at_start']}, at end {m['load_avg_1_5_15_at_end']}, 1-min max during the "
             f"run {m['load_1min_max']} (this run's own threads count about {m['torch_threads']}), CPU steal "
             f"{m['cpu_steal_share']}.", "",
             f"Matmul peak: fp32 {p['fp32_flops'] / 1e9:.1f} GFLOP/s, bf16 {p['bf16_flops'] / 1e9:.1f} GFLOP/s "
             f"(best of square {p['sizes']}, at the start and the end; fp32 start "
             f"{p['fp32_flops_start'] / 1e9:.1f}, end {p['fp32_flops_end'] / 1e9:.1f}).", "",
             f"## Ladder: {res['ladder']['total_s']:.1f} s (target < {LADDER_TARGET_S:.0f} s: "
             f"{'met' if t['ladder_under_180s']['met'] else 'not met'})", "",
             format_table(res["ladder"]["levels"], ["level", "params", "steps", "wall_s", "train_loop_s", "tok_s", "train_loss",
                                                    "val_loss", "gap", "val_floor", "val_above_floor"]), "",
             "## Training tokens/s: compact vs full GPT-2 vocabulary (target >= 10x at the 3 smallest: "
             f"{'met' if t['ratio_10x_three_smallest']['met'] else 'not met'})", "",
             format_table(res["throughput"], ["level", "tokens_per_step", "vocab_compact", "compact_tok_s",
                                              "full_tok_s", "ratio"]), "",
             f"## MFU vs measured fp32 peak (target >= 50% at large: {'met' if t['mfu_50pct_largest']['met'] else 'not met'})",
             "", f"FLOPs/token = {res['flops_formula']}", "",
             format_table(res["mfu"], ["level", "flops_per_token", "achieved_gflops", "peak_fp32_gflops", "mfu"]), "",
             "## Generation (200 new tokens, batch 1, no KV cache)" if not res["quick"] else "## Generation", "",
             format_table(res["generation"], ["level", "new_tokens", "seconds", "tok_s", "kv_cache"]), "",
             "## KV cache: generate() vs generate_cached() (batch 1, top-k 40, seed 0; median of "
             f"{res['settings']['repeats']} interleaved runs)", "",
             format_table(res["kv_cache"], ["model", "params", "block_size", "new_tokens", "uncached_tok_s",
                                            "cached_tok_s", "speedup", "same_tokens"]), "",
             "## Where a training step's time goes (share of wall time, torch.profiler)", "",
             format_table(res["profile"], ["level", "ms_per_step", *PROFILE_BUCKETS, "outside_ops"]), ""]
    return "\n".join(lines)
