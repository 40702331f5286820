"""Top-1 / top-5 / loss of models over one pass of a loader, each model normalising with its own mean/std; under a
launch of several processes each scores its share of the images and the counts are summed."""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from ..errors import TimmAssembleError
from ..processes import LauncherWatch, check_launch, launched, process_state
from ..progress import track
from ..tensor_checks import check_finite_logits
from .options import autocast

T = TypeVar("T")
# how long a process waits in a pass's sum for the slowest one (gloo's default, 30 min, can be less than the spread
# of a large pass); a process that died ends the wait at once ("Connection closed by peer")
EVALUATION_WAIT = timedelta(days=1)


@dataclass(frozen=True)
class Shard:
    """This process's share of an evaluation spread over `size` processes: every `size`-th image from `rank`,
    each keeping its index in the whole (so it is corrupted as it is in one process); counts summed over `group`."""

    rank: int
    size: int
    group: Any  # a torch.distributed gloo group: counts are CPU tensors whatever the devices
    local_index: int  # the process's index on its machine: its GPU

    @classmethod
    def of(cls, state: Any, group: Any) -> "Shard":
        """This process's share, from accelerate's state of the launch."""
        return cls(state.process_index, state.num_processes, group, state.local_process_index)

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items[self.rank :: self.size])

    def total(self, counts: list[float]) -> list[float]:
        import torch.distributed as dist

        summed = torch.tensor(counts, dtype=torch.float64)
        try:
            dist.all_reduce(summed, group=self.group)
        except RuntimeError as err:  # gloo: "Connection closed by peer"
            raise TimmAssembleError("stopped: another process of the launch failed; its error is above") from err
        return summed.tolist()

    def device(self, device: torch.device) -> torch.device:
        """A bare `cuda` means this process's own GPU."""
        return torch.device("cuda", self.local_index) if device.type == "cuda" and device.index is None else device


@contextlib.contextmanager
def sharded_evaluation() -> Iterator[Shard | None]:
    """Under `accelerate launch` / torchrun with several processes: the process group (checked against what the
    launcher asked for, as a training launch is), watched for a launcher that goes away, and this process's
    `Shard`; None in one process."""
    if launched().processes <= 1:
        yield None
        return
    import torch.distributed as dist

    state = process_state()
    try:
        check_launch(state.num_processes, torch.cuda.is_available())
        with LauncherWatch(rerun="rerun the same command"):
            yield Shard.of(state, dist.new_group(backend="gloo", timeout=EVALUATION_WAIT))
    finally:
        state.destroy_process_group()


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """How many samples have their target among the top-k predictions, for each k; stays on the device.

    A sample with any non-finite logit is never a hit: `topk` over NaN returns some class, which may be the target.
    """
    maxk = min(max(ks), logits.shape[1])
    hit = logits.topk(maxk, dim=1).indices.eq(target[:, None]) & torch.isfinite(logits).all(dim=1, keepdim=True)
    return torch.stack([hit[:, : min(k, maxk)].any(dim=1).sum() for k in ks])


class Scorer:
    """One model on a device: normalises uint8 batches with the model's mean/std and accumulates top-1/top-5/loss."""

    def __init__(
        self,
        model: torch.nn.Module,
        data_config: dict,
        device: torch.device,
        amp: str = "none",
        channels_last: bool = False,
    ):
        self.model, self.data_config = model.to(device).eval(), data_config
        self.device, self.amp, self.channels_last = device, amp, channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(data_config["mean"], device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(data_config["std"], device=device).view(1, -1, 1, 1) * 255
        self.reset()

    def reset(self) -> None:
        self.n = self.correct1 = self.correct5 = 0
        self.loss_sum = 0.0

    @torch.inference_mode()
    def update(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        x = (images.to(self.device).float() - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = targets.to(self.device)
        with autocast(self.device, self.amp):
            logits = self.model(x)
        logits = logits.float()
        check_finite_logits(logits, "images of a batch")
        self.loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        top1, top5 = topk_correct(logits, targets, (1, 5)).tolist()
        self.correct1 += top1
        self.correct5 += top5
        self.n += targets.numel()

    def counts(self) -> list[float]:
        return [self.n, self.correct1, self.correct5, self.loss_sum]

    def set_counts(self, counts: Sequence[float]) -> None:
        n, correct1, correct5, self.loss_sum = counts
        self.n, self.correct1, self.correct5 = int(n), int(correct1), int(correct5)

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "top1": 100.0 * self.correct1 / n,
            "top5": 100.0 * self.correct5 / n,
            "loss": self.loss_sum / n,
            "error": 1.0 - self.correct1 / n,
            "num_images": self.n,
        }


def run_scorers(
    loader: torch.utils.data.DataLoader, scorers: Sequence[Scorer], desc: str, shard: Shard | None = None
) -> list[dict[str, float]]:
    """One pass over `loader`, every batch scored by every scorer; with a `shard`, the loader holds this process's
    share and the results are those of all processes together."""
    for s in scorers:
        s.reset()
    for images, targets in track(loader, desc):
        for s in scorers:
            s.update(images, targets)
    if shard is not None:
        totals = shard.total([c for s in scorers for c in s.counts()])
        for i, s in enumerate(scorers):
            s.set_counts(totals[4 * i : 4 * i + 4])
    return [s.result() for s in scorers]
