"""``make bench-sampling``: what a run's default sampler saves against the DDPM x 20 the demo used before
`make samplers` chose one, side by side in one run.

Both sample the same N = 500 prompts (the guidance comparison's: fifty per digit) at w = 3 from the same seeds, on
this machine, with the run's weights; the table gives each one's wall time, network evaluations per image (counted)
and the ratio. `make guidance` at its default grid samples 54 such rows (plus the interval's tuning), so the ratio is
what the default saves there.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import data, paths, reports
from ..pipeline import TextToImage
from ..sampling import Evaluations, Sampler
from . import machine

THESIS_DEMO = Sampler("ddpm", 20, "leading", None)  # the demo's sampler before `make samplers`: DDPM, 20 steps


def run(
    run_dir: Path = Path("runs/mnist/demo"), samples_per_prompt: int = 50, w: float = 3.0, out: Path | None = None
) -> str:
    pipe = TextToImage.from_run(paths.ROOT / run_dir, device="cpu")
    cfg = pipe.cfg
    conditions = data.spec(cfg).sweep_conditions(cfg, samples_per_prompt, None)
    prompts = data.spec(cfg).prompts(cfg, conditions)
    rows = []
    for name, sampler in (("before (DDPM x 20)", THESIS_DEMO), ("the run's default", pipe.sampling)):
        counted = Evaluations()
        pipe.images(prompts[:10], w, sampler=sampler, show_progress=False)  # warm-up
        start = time.perf_counter()
        pipe.images(prompts, w, sampler=sampler, evaluations=counted, show_progress=False)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "sampler": f"{name}: {sampler.describe()}",
                "seconds": seconds,
                "evaluations_per_image": counted.per_image(len(prompts)),
                "images_per_s": len(prompts) / seconds,
            }
        )
        print(f"{rows[-1]['sampler']}: {seconds:.1f} s")
    for row in rows:
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
    out = Path(out or paths.reports_dir() / "bench" / "sampling")
    caption = (
        f"Sampling N = {len(prompts)} images at w = {w:g} from {paths.portable(pipe.checkpoint)} on "
        f"{machine()}, one run, the same prompts and seeds. speedup: the first row's time over each row's. "
        "Reproduce: make bench-sampling."
    )
    table = reports.write_table(rows, out, caption=caption)
    reports.write_provenance(
        out.with_suffix(".md"),
        cfg,
        checkpoint=pipe.checkpoint,
        samples=len(prompts),
        guidance_scale=w,
        speedup=rows[-1]["speedup"],
    )
    print(table)
    return table
