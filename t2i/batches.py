"""Batches for the training loop, on the device, in an order fixed by the seed and the epoch.

- **In-memory datasets** (a ``TensorDataset``: digits, MNIST, CIFAR-10) are copied to the device once. The
  DataLoader then only deals out *indices* (accelerate's seedable sampler, split across processes as for any
  map-style dataset), and a batch is one indexing operation on the device: no collation of hundreds of single
  images per step, no host-to-device copy. The batches are exactly the DataLoader's for the same seed.
- **Streams** (a ``ShardStream``) shuffle and split themselves by rank and worker; they go through DataLoader workers
  with pinned memory and are copied to the device without blocking.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from .configs import ExperimentConfig
from .data.shards import ShardStream


class Batches:
    """``set_epoch(e)``, ``per_epoch(e)`` (batches in epoch ``e`` on this process), ``iterate(skip)`` and
    ``to_device(batch)``."""

    def __init__(self, dataset: Dataset, cfg: ExperimentConfig, accelerator: Accelerator):
        self.device = accelerator.device
        self.dataset, self.batch_size, self.num_workers = dataset, cfg.batch_size, cfg.num_workers
        self.tensors: tuple[torch.Tensor, ...] | None = None
        pin = self.device.type == "cuda"
        if isinstance(dataset, TensorDataset):
            self.tensors = tuple(t.to(self.device) for t in dataset.tensors)
            indices = DataLoader(
                range(len(dataset)), batch_size=cfg.batch_size, shuffle=True, drop_last=False, collate_fn=torch.tensor
            )
            self.loader = accelerator.prepare_data_loader(indices, device_placement=False)
        elif isinstance(dataset, IterableDataset):  # a stream splits itself: accelerate must not split it again
            loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=pin)
            self.loader = prepare_data_loader(loader, num_processes=1, process_index=0, put_on_device=False)
        else:
            loader = DataLoader(
                dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, pin_memory=pin
            )
            self.loader = accelerator.prepare_data_loader(loader, device_placement=False)
        self.accelerator = accelerator

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def per_epoch(self, epoch: int) -> int:
        """Batches this process gets in ``epoch``: what the LR schedule's horizon, the progress bar and mid-epoch
        checkpoints count (a stream read by several workers ends with a partial batch per worker)."""
        if isinstance(self.dataset, ShardStream):
            return self.dataset.batches(epoch, self.batch_size, self.num_workers)
        return len(self.loader)

    def iterate(self, skip: int = 0) -> Iterator:
        """This epoch's batches after the first ``skip`` (a run resumed mid-epoch), in the same order as ever, as the
        loader gives them: pass each to :meth:`to_device`."""
        return iter(self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader)

    def to_device(self, batch):
        """A batch on the device: indexed there (in-memory datasets), or copied without blocking (streams)."""
        if self.tensors is not None:
            index = batch.to(self.device, non_blocking=True)
            return tuple(t[index] for t in self.tensors)
        return send_to_device(batch, self.device, non_blocking=True)
