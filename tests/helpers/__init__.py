"""What several test files share."""

from pathlib import Path

import torch

from t2i import checkpoints

ROOT = Path(__file__).resolve().parents[2]  # the project root


def weights(run: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    """The UNet weights of a run's newest checkpoint."""
    return checkpoints.load_unet(checkpoints.latest(run), ema=ema).state_dict()


TIMED = {"images_per_s", "data_wait_share"}  # the scalars that measure the machine, not the run


def tensorboard_events(run: Path) -> dict[str, list]:
    """What TensorBoard shows of a run: (step, value) of every scalar (step only for the timings) and (step, PNG)
    of every image, with the events of killed attempts purged as TensorBoard purges them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tracking"), size_guidance={"images": 0, "scalars": 0}).Reload()
    shown = {
        tag: [(e.step, None if tag in TIMED else e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }
    return {
        **shown,
        **{tag: [(e.step, e.encoded_image_string) for e in events.Images(tag)] for tag in events.Tags()["images"]},
    }
