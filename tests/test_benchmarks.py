"""The benchmark scripts run, count what the paper counts, and report every configuration they measured.

Timings are not checked here (benchmarks are scripts that print tables, not timed tests); the counts and the
shape of the reports are."""

import json
import subprocess
import sys
from collections import Counter

import pytest
from conftest import REPO

BENCHMARKS = REPO / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def cost(tmp_path_factory):
    output = tmp_path_factory.mktemp("cost") / "cost.json"
    printed = run_script("cost.py", "--output", str(output)).stdout
    return printed, {r["model"]: r for r in json.loads(output.read_text())["results"]}


def test_cost_reproduces_the_papers_count_of_the_published_model(cost):
    _, results = cost
    published = results["SparseViT (published sparsity)"]
    assert published["parameters"] == 50_245_697
    assert round(published["macs"] / 1e9, 2) == 46.03
    assert published["flops"] == 2 * published["macs"]
    assert round(published["fvcore_style"] / 1e9, 1) == 46.2  # the paper's "46.2 GFLOPs" (fvcore counts MACs)


def test_cost_shows_what_sparsity_saves_against_dense_attention_and_the_segformer_peers(cost):
    printed, results = cost
    sparse, dense = results["SparseViT (published sparsity)"], results["SparseViT, dense attention (all S = 1)"]
    assert dense["parameters"] == sparse["parameters"]
    assert round(1 - sparse["attention_macs"] / dense["attention_macs"], 2) == 0.66
    assert dense["macs"] - sparse["macs"] == dense["attention_macs"] - sparse["attention_macs"]
    assert {"SegFormer MiT-B2 (decoder 768, 1 label)", "SegFormer MiT-B5 (decoder 768, 1 label)"} <= set(results)
    assert "| SparseViT (published sparsity) | 512 x 512 | 50.25 | 46.03 | 92.07 |" in printed
    assert "sparsity saves 9.17 G MACs" in printed


def test_speed_measures_every_planned_configuration_and_reprints_a_saved_run(tmp_path):
    output = tmp_path / "speed.json"
    args = ["--sizes", "64", "--dtypes", "fp32", "bf16", "--attn", "sdpa", "--no-compile", "--no-train",
            "--warmup", "0", "--repeats", "1", "--min-repeats", "1", "--throughput-sizes", "64",
            "--throughput-batch", "2", "--matmul-size", "256", "--output", str(output)]
    printed = run_script("speed.py", *args).stdout
    saved = json.loads(output.read_text())
    kinds = [r["kind"] for r in saved["results"]]
    assert kinds == ["ceiling", "infer", "infer", "ceiling"]
    assert not [r for r in saved["results"] if "error" in r]
    fp32, bf16 = saved["results"][1:3]
    assert (fp32["dtype"], bf16["dtype"]) == ("fp32", "bf16")
    for result in (fp32, bf16):
        # --repeats counts calls at 512 x 512 and scales with the pixel count: 64 calls at 64 x 64
        assert len(result["latency_s"]) == 64 and result["throughput_img_s"] > 0 and result["latency_peak_mib"] >= 0
    assert 0.9 < bf16["mask_agreement"] <= 1.0 and "mask_agreement" not in fp32
    assert saved["results"][0]["matmul_fp32_gflops"] > 0 and float(saved["results"][0]["flops"]["64"]) > 0
    assert "| 64 | bf16 weights | sdpa | no |" in printed
    assert run_script("speed.py", "--tables-from", str(output)).stdout.strip() == printed.strip()


def test_profile_groups_the_operator_time_and_lists_the_slowest_operators():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import profile_ops
    finally:
        sys.path.remove(str(BENCHMARKS))
    # At 256 x 256 the fp32 global-attention blocks (256 tokens) run torch's fused kernel, the sparse ones bmm.
    wall, groups, ops = profile_ops.profile_forward(256, "fp32", "sdpa", warmup=1)
    assert wall > 0 and ops == sorted(ops, key=lambda op: -op[2])
    total = sum(groups.values())
    assert groups["matrix products"] > 0 and groups["convolutions"] > 0 and groups["fused attention"] > 0
    assert groups["layout"] < groups["matrix products"] + groups["convolutions"]
    assert abs(sum(seconds for _, _, seconds, _ in ops) - total) < 1e-3 * max(total, 1e-3) + 1e-5


def test_attention_kernels_time_every_shape_the_published_model_attends_in():
    printed = run_script("attention_kernels.py", "--sizes", "512", "--dtypes", "bf16", "--repeats", "1").stdout
    rows = [line.split(" | ")[:4] for line in printed.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # (stage, rate S, blocks, groups x heads x tokens x head_dim): S^2 groups of a 32 x 32 (stage 3) or 16 x 16
    # (stage 4) token map, 5 + 5 + 5 + 5 and 4 + 3 blocks as published.
    assert rows == [
        ["| 3", "8", "5", "64 x 5 x 16 x 64"],
        ["| 3", "4", "5", "16 x 5 x 64 x 64"],
        ["| 3", "2", "5", "4 x 5 x 256 x 64"],
        ["| 3", "1", "5", "1 x 5 x 1024 x 64"],
        ["| 4", "2", "4", "4 x 8 x 64 x 64"],
        ["| 4", "1", "3", "1 x 8 x 256 x 64"],
        ["| all", "", "27", "summed over the blocks"],
    ]


def test_attention_kernel_shapes_are_the_ones_the_model_runs(monkeypatch):
    """The shapes the benchmark derives from the configuration are those the model's attention function receives,
    padding included (at 320 x 320 the 20 x 20 stage-3 map is padded to 24 x 24 for S = 8)."""
    import torch
    from transformers import AttentionInterface

    from sparsevit_hf import SparseViTConfig, SparseViTModel
    from sparsevit_hf.modeling_sparsevit import eager_attention_forward

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from attention_kernels import attention_shapes

    received = Counter()

    def recording_attention(module, query, key, value, attention_mask, **kwargs):
        received[tuple(query.shape)] += 1
        return eager_attention_forward(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "recording", recording_attention)
    config = SparseViTConfig(attn_implementation="recording")
    with torch.no_grad():
        SparseViTModel(config).eval()(torch.zeros(1, 3, 320, 320))
    shapes = attention_shapes(config, 320)
    assert received == Counter({(s["groups"], s["heads"], s["tokens"], s["head_dim"]): s["blocks"] for s in shapes})
    assert (64, 5, 9, 64) in received  # 20 x 20 padded to 24 x 24 for S = 8


def test_gpu_script_dry_run_measures_every_section_on_the_cpu(tmp_path):
    output = tmp_path / "gpu.json"
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", "--output", str(output)],
        check=False, capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(output.read_text())
    assert saved["dry_run"] and saved["machine"]["torch"]
    rows = [row for section in ("parity", "inference", "training", "native", "compiled") for row in saved[section]]
    assert not [row for row in rows if "error" in row or "skipped" in row]
    assert saved["parity"][0]["max_abs_logit_diff"] == 0.0  # CPU against CPU: the same computation
    grid = {(r["dtype"], r["attention"], r["batch"]) for r in saved["inference"]}
    assert grid == {(d, a, b) for d in ("fp32", "bf16", "fp16") for a in ("sdpa", "eager") for b in (1, 2)}
    assert all(r["latency_s"] > 0 and r["images_per_s"] > 0 for r in saved["inference"] + saved["compiled"])
    assert [r["checkpointing"] for r in saved["training"]] == [False, True]
    assert {(r["dtype"], r["size"]) for r in saved["native"]} == {(d, s) for d in ("bf16", "fp32") for s in (128, 256)}
    assert [r["batch"] for r in saved["compiled"]] == [1, 2] and saved["compiled"][0]["compile_s"] > 0
    for heading in ("fp32 parity, GPU vs CPU", "| 64 | fp16 | eager | 2 |", "training step, bf16 autocast",
                    "| 256 x 256 | fp32 |", "compile s (first call)"):
        assert heading in result.stdout


def test_gpu_script_without_a_gpu_says_how_to_check_it(monkeypatch, capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu
    finally:
        sys.path.remove(str(BENCHMARKS))
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_gpu_script_skips_what_would_start_after_its_time_budget():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu
    finally:
        sys.path.remove(str(BENCHMARKS))
    spent = gpu.Budget(0.0)
    assert gpu.measure({"batch": 1}, spent, lambda: {"latency_s": 1.0}) == {"batch": 1, "skipped": "time budget"}
    assert gpu.measure({"batch": 1}, gpu.Budget(60), lambda: {"latency_s": 1.0}, reserve_s=75)["skipped"]
    failing = gpu.measure({"batch": 64}, gpu.Budget(60), lambda: 1 / 0)
    assert failing["error"].startswith("ZeroDivisionError")
