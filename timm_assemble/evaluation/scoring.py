"""Top-1 / top-5 / loss of models over one pass of a loader, each model normalising with its own mean/std."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..progress import track
from ..tensor_checks import check_finite_logits
from .options import autocast


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
        self.model = model.to(device).eval()
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

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "top1": 100.0 * self.correct1 / n,
            "top5": 100.0 * self.correct5 / n,
            "loss": self.loss_sum / n,
            "error": 1.0 - self.correct1 / n,
            "num_images": self.n,
        }


def run_scorers(loader: torch.utils.data.DataLoader, scorers: Sequence[Scorer], desc: str) -> list[dict[str, float]]:
    """One pass over `loader`, every batch scored by every scorer."""
    for s in scorers:
        s.reset()
    for images, targets in track(loader, desc):
        for s in scorers:
            s.update(images, targets)
    return [s.result() for s in scorers]
