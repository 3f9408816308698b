"""Retake the TensorBoard screenshots in ``reports/watch/`` (``make screenshots``): a 12-epoch demo-profile MNIST run
with tracking, sample grids and evaluations every 2 epochs, TensorBoard over its events, and a headless Chromium
taking a picture of the scalars and the images tabs. Needs Debian's ``chromium`` package (nothing else in the
project does); the screenshots' sidecars record the versions and the run's evaluations.
"""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from . import paths, reports, runs
from .errors import MissingAsset
from .watch import read_eval_log

RUN_NAME = "watched"
SETTINGS = {
    "epochs": "12",
    "report_to": "tensorboard",
    "sample_every_epochs": "2",
    "eval_every_epochs": "2",
    "eval_samples_per_prompt": "5",
    "eval_guidance_scales": "[1.0, 3.0]",
    "sample_columns": "4",
}
VIEWS = {
    "tensorboard_scalars.png": "#scalars&tagFilter=loss_smoothed|eval/adherence",
    "tensorboard_samples.png": "#images",
}
WINDOW = "1500,1000"
# what a headless Chromium needs on a machine without a network (and as root, in a container)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
DEPENDS_ON = ["t2i/tracking.py", "t2i/watch.py", "t2i/screenshots.py"]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise MissingAsset("make screenshots needs a Chromium: apt-get install chromium")
    run = paths.run_dir("mnist", RUN_NAME)
    shutil.rmtree(run, ignore_errors=True)  # a fresh run, so the curves are this code's
    train = [sys.executable, "-m", "t2i", "train", "--experiment", "mnist", "--profile", "demo", "--run-name", RUN_NAME]
    started = time.perf_counter()
    subprocess.run([*train, *(a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}"))], check=True)
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    out = paths.reports_dir() / "watch"
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    board = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(run / runs.TRACKING),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url)
        for name, view in VIEWS.items():
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [
                        chromium,
                        *CHROMIUM_FLAGS,
                        f"--user-data-dir={profile}",
                        f"--window-size={WINDOW}",
                        "--virtual-time-budget=20000",
                        f"--screenshot={out / name}",
                        url + view,
                    ],
                    check=True,
                    timeout=180,
                    capture_output=True,
                )
            evaluations = {
                f"epoch {r['epoch']:g}, w={r['guidance_scale']:g}": round(r["adherence"], 3)
                for r in read_eval_log(run)
                if r["guidance_scale"] != "real"
            }
            reports.write_provenance(
                out / name,
                runs.load_config(run),
                depends_on=DEPENDS_ON,
                adherence=evaluations,
                tensorboard=_version([sys.executable, "-m", "tensorboard.main", "--version"]),
                chromium=_version([chromium, "--version"]),
                view=view,
                note=f"a {SETTINGS['epochs']}-epoch demo-profile run ({minutes} min {seconds} s "
                f"on {_device()}), then TensorBoard and "
                "headless Chromium",
            )
            print(f"wrote {out / name}")
    finally:
        board.terminate()
        board.wait()
    return 0


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"this machine's {platform.machine()} CPU"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _version(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if done.returncode == 0 else "unknown"


if __name__ == "__main__":
    sys.exit(main())
