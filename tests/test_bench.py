"""The benchmarks run on a CPU (CI) exactly as on a GPU; what they count is checked here, never how fast it was."""

import csv
import json

import pytest
import torch

from t2i import configs, paths
from t2i.bench import breakdown, gpu, measure
from t2i.models import build_unet


def test_flop_count_of_the_mnist_step_is_1_22_tflop_and_linear_in_the_batch():
    cfg = configs.get("mnist", "full")
    flop = measure.flop_per_step(cfg)
    assert 1.20e12 < flop < 1.25e12  # 1.2226 TFLOP at batch 512 (forward + backward)
    assert measure.flop_per_step(cfg.replace(batch_size=256)) == pytest.approx(flop / 2)


@pytest.mark.parametrize("experiment", ["cifar10", "wikiart"])
def test_64_wide_heads_keep_the_thesis_parameters_and_flops_and_change_the_head_count(experiment):
    cfg = configs.get(experiment, "full")
    wide = cfg.replace(attention_head_width=64)
    assert measure.parameters(wide) == measure.parameters(cfg)
    assert measure.flop_per_step(wide) == measure.flop_per_step(cfg)

    def heads(c):
        with torch.device("meta"):
            return [m.heads for m in build_unet(c).modules() if type(m).__name__ == "Attention"]

    assert heads(cfg)[0] == cfg.attention_head_dim and heads(wide)[0] == 256 // 64  # CIFAR/WikiArt's first: 256 ch


def test_bench_gpu_runs_every_config_on_the_cpu_and_reports_the_trainer_against_the_bare_step(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    table = gpu.run(variants=("fp32", "bf16+heads64"), profile="smoke", steps=1, warmup=1)
    assert "trainer" in table
    with open(paths.bench_report("gpu")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["experiment"], r["variant"]) for r in rows] == [
        (e, v) for e in gpu.EXPERIMENTS for v in ("bf16+heads64", "fp32", "trainer (no)")
    ]  # fp32 right before
    for row in rows:
        assert float(row["ms_step"]) > 0 and float(row["tflop_step"]) > 0, row
        assert row["steps"] == "1" and float(row["spread_pct"]) == 0 and "failed" not in row["note"], row
    trainers = [r for r in rows if r["variant"].startswith("trainer")]
    for trainer in trainers:  # against the bare step timed before (the row above) and after it
        before, after = (float(ms) for ms in trainer["note"].split(" ms (before / after)")[0].split()[-3::2])
        assert before == pytest.approx(float(rows[rows.index(trainer) - 1]["ms_step"]), rel=1e-3)
        assert float(trainer["vs_bare"]) == pytest.approx(float(trainer["ms_step"]) / ((before + after) / 2), rel=1e-3)
    celeba_trainer = next(r for r in trainers if r["experiment"] == "celeba")  # its step also runs the text encoder
    assert "includes the text encoder's forward" in celeba_trainer["note"]
    assert all(float(r["vs_bare"]) > 0 and 0 <= float(r["data_wait_pct"]) <= 100 for r in trainers)
    assert paths.bench_report("gpu").with_name("gpu.provenance.json").exists()
    with open(paths.bench_report("gpu_breakdown")) as f:  # where the time goes, per kind of op
        breakdown = list(csv.DictReader(f))
    assert [(r["experiment"], r["variant"]) for r in breakdown] == [
        (e, v) for e in gpu.EXPERIMENTS for v in ("fp32", "bf16+heads64")
    ]
    for row in breakdown:
        shares = [float(row[f"{c}_pct"]) for c in gpu.CATEGORIES]
        assert sum(shares) == pytest.approx(100) and shares[gpu.CATEGORIES.index("conv")] > 0, row
        assert float(row["ms_step"]) > 0 and row["device_busy_pct"] == "" and "aten::" in row["note"], row
    assert paths.bench_report("gpu_breakdown").with_name("gpu_breakdown.provenance.json").exists()


@pytest.mark.parametrize(
    "name, ancestors, category",
    [
        ("aten::convolution_backward", ["autograd::engine::evaluate_function: ConvolutionBackward0"], "conv"),
        ("aten::cudnn_convolution", ["aten::_convolution", "aten::convolution", "aten::conv2d"], "conv"),
        ("aten::mm", ["aten::_scaled_dot_product_attention_math", "aten::scaled_dot_product_attention"], "attention"),
        ("aten::_efficient_attention_backward", [], "attention"),
        ("aten::addmm", ["aten::linear"], "matmul"),
        ("aten::_to_copy", ["aten::to", "aten::group_norm"], "copy_cast"),  # autocast's float32 cast for the norm
        ("aten::native_group_norm", ["aten::group_norm"], "norm"),
        ("aten::lerp_", ["aten::_foreach_lerp_", "Optimizer.step#AdamW.step"], "optimizer"),
        ("aten::silu", [], "other"),
    ],
)
def test_profiled_ops_are_sorted_by_kind_the_optimizer_and_attention_by_their_callers(name, ancestors, category):
    assert breakdown.category(name, ancestors) == category


def test_a_gpu_profile_counts_each_ops_kernels_and_the_devices_busy_time():
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    def op(name, start, end, parent=None, kernels=()):
        event = FunctionEvent(id=start, name=name, thread=1, start_us=start, end_us=end, use_device="cuda")
        if parent is not None:
            event.set_cpu_parent(parent)
            parent.append_cpu_child(event)
        for kernel_us in kernels:
            event.append_kernel("kernel", 0, kernel_us)
        return event

    step = op("Optimizer.step#AdamW.step", 0, 100)
    events = [
        op("aten::conv2d", 0, 10, kernels=[30.0, 20.0]),
        op("aten::_to_copy", 10, 12, kernels=[5.0]),
        step,
        op("aten::_fused_adamw_", 1, 90, parent=step, kernels=[40.0]),
        op("aten::silu", 90, 95),
    ]
    events += [
        FunctionEvent(
            id=100 + k,
            name="kernel",
            thread=7,
            start_us=k * 100,
            end_us=k * 100 + us,
            device_type=DeviceType.CUDA,
            use_device="cuda",
        )
        for k, us in enumerate([30, 20, 5, 40])
    ]
    by_category, by_op, kernels, kernel_us = breakdown.attribute(events, cuda=True)
    assert by_category == {**dict.fromkeys(gpu.CATEGORIES, 0.0), "conv": 50.0, "copy_cast": 5.0, "optimizer": 40.0}
    assert by_op["aten::conv2d"] == 50.0 and by_op["aten::silu"] == 0.0  # host time does not count on a GPU
    assert (kernels, kernel_us) == (4, 95.0)


def test_a_cell_that_runs_out_of_memory_is_retried_at_half_the_batch_down_to_an_eighth():
    cfg = configs.get("mnist", "full")  # batch 512
    tried = []

    def fake(cfg, fits_up_to):
        tried.append(cfg.batch_size)
        if cfg.batch_size > fits_up_to:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"ms": 10.0, "note": "measured"}

    assert measure.guarded(fake, cfg, 128) == {
        "ms": 10.0,
        "batch": 128,
        "note": "batch 128: 512 ran out of memory; measured",
    }
    assert tried == [512, 256, 128]
    tried.clear()
    assert measure.guarded(fake, cfg, 1) == {
        "note": "failed: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    }
    assert tried == [512, 256, 128, 64]
    # no retry
    assert measure.guarded(lambda cfg: 1 / 0, cfg) == {"note": "failed: ZeroDivisionError: division by zero"}


def test_a_cell_at_a_smaller_batch_is_counted_at_its_batch_and_compared_per_image(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    full = configs.get("mnist", "smoke").batch_size
    bare = measure.bare

    def bare_that_fits_half(cfg, *args):
        if cfg.batch_size == full:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return bare(cfg, *args)

    monkeypatch.setattr(gpu, "bare", bare_that_fits_half)
    gpu.run(experiments=("mnist",), variants=("fp32",), profile="smoke", steps=3, warmup=1)
    with open(paths.bench_report("gpu")) as f:
        bare_row, trainer = list(csv.DictReader(f))
    assert (int(bare_row["batch"]), int(trainer["batch"])) == (full // 2, full)
    assert bare_row["note"] == f"batch {full // 2}: {full} ran out of memory"
    assert float(bare_row["tflop_step"]) == pytest.approx(float(trainer["tflop_step"]) / 2)
    assert float(bare_row["img_s"]) == pytest.approx(full // 2 * 1000 / float(bare_row["ms_step"]))
    before, after = (float(ms) for ms in trainer["note"].split(" ms (before / after)")[0].split()[-3::2])
    per_image = (before + after) / 2 / (full // 2)
    assert float(trainer["vs_bare"]) == pytest.approx(float(trainer["ms_step"]) / full / per_image, rel=1e-3)


def test_a_cell_reports_the_median_step_and_stops_timing_after_its_time_or_step_budget():
    import time

    cpu = torch.device("cpu")
    assert len(measure.step_times(lambda: time.sleep(0.02), steps=100, device=cpu, cell_s=0.05)) == 3  # at least 3
    assert len(measure.step_times(lambda: None, steps=7, device=cpu, cell_s=60)) == 7  # at most `steps`
    assert len(measure.step_times(lambda: None, steps=2, device=cpu, cell_s=0)) == 2  # fewer than 3 if asked
    summary = measure.summary([10.0, 11.0, 12.0, 13.0, 500.0])  # one stray slow step does not move the median
    assert summary == {"ms": 12.0, "spread_pct": pytest.approx(100 * (13 - 11) / 12), "steps": 5}


def test_compile_cells_start_from_a_cold_cache_unless_the_caller_chose_one(monkeypatch, tmp_path):
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what importing diffusers sets
    with gpu._compile_cache():
        cold = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        assert cold != default_cache_dir() and not os.listdir(cold)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == default_cache_dir() and not os.path.exists(cold)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cache of the caller's own: used as it is
    with gpu._compile_cache():
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path)


def test_a_cpu_run_never_hides_a_gpu_report_and_each_device_keeps_its_own(tmp_path):
    root = paths.reports_dir() / "bench"
    for device, created in (
        ("nvidia-h200", "2026-11-20T00:00:00+00:00"),
        ("cpu-x86-64-2cpus", "2026-12-01T00:00:00"),
        ("nvidia-h100-80gb-hbm3", "2026-11-25T00:00:00+00:00"),
    ):
        (root / device).mkdir(parents=True)
        (root / device / "gpu.csv").write_text("experiment\n")
        (root / device / "gpu.provenance.json").write_text(json.dumps({"created": created}))
    assert paths.bench_report("gpu").parent.name == "nvidia-h100-80gb-hbm3"  # the newest GPU run, not the CPU's
    assert paths.bench_report("loader") == root / "loader.csv"
    from t2i.bench import device_slug

    assert device_slug("NVIDIA H200", cpu=False) == "nvidia-h200" and device_slug("x", cpu=True).startswith("cpu-")


def test_bench_sampling_times_the_default_sampler_against_ddpm_20_on_the_same_prompts(smoke_cfg, fit, tmp_path):
    from t2i.bench import sampling

    run = fit(smoke_cfg.replace(epochs=1, sampler="ddim", num_inference_steps=5), paths.run_dir("mnist", "timed"))
    sampling.run(run, samples_per_prompt=1, out=tmp_path / "sampling")
    with open(tmp_path / "sampling.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["evaluations_per_image"]) for r in rows] == [40.0, 10.0]  # counted: 2 per guided step
    assert float(rows[0]["speedup"]) == 1.0 and "ddim x 5 steps" in rows[1]["sampler"]


def test_bench_bootstrap_times_each_way_side_by_side_and_each_pair_gives_the_same_numbers(tmp_path):
    from t2i.bench import bootstrap

    bootstrap.run(n=30, widths={"wide": 40, "narrow": 8}, resamples=20, out=tmp_path / "bootstrap")
    with open(tmp_path / "bootstrap.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["features"].split()[0], r["way"].split(",")[0]) for r in rows] == [
        (space, metric) for space in ("wide", "narrow") for metric in ("FD", "FD", "KID", "KID")
    ]
    for one_at_a_time, other in zip(rows[0::2], rows[1::2]):
        assert float(other["max_relative_difference"]) < 1e-8  # the two ways compute the same resampled numbers
        assert float(other["speedup"]) == pytest.approx(
            float(one_at_a_time["seconds_per_row"]) / float(other["seconds_per_row"]), rel=1e-3
        )  # the ratio is of the two measured times, side by side
        seconds = float(other["seconds_per_row"])
        assert float(other["front_seconds"]) == pytest.approx(seconds * bootstrap.FRONT_ROWS)
