"""Throughput, latency, memory, params and FLOPs of several models, side by side.

All models are built first and then timed in one process, interleaved: every repeat runs each model
once (in rotating order) for the same number of batches, so drifting clocks or background load hit
all models alike. Reported throughput is the median over repeats, with the min-max spread.

`--as-published` is the comparison the paper's speed claim is about: every weight at its own evaluation
size (timm's pretrained cfg: `test_input_size`, else `input_size`) beside its published top-1 at that size.
"""

from __future__ import annotations

import contextlib
import functools
import json
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TimmAssembleError
from ..fileio import atomic_path
from ..model_stats import count_flops
from ..progress import evaluation_progress, track
from ..sizing import Claim, check_batch
from .model import create_eval_model
from .options import AMP_DTYPES, autocast, default_device, resolve_device

OURS = ("assemble_resnet50", "assemble_resnet152")
DEFAULT_PEERS = (
    "resnet50", "resnet50d", "seresnet50", "skresnext50_32x4d", "resnetblur50",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
)  # fmt: skip
_REFERENCE_FILE = Path(__file__).resolve().parent / "reference_results.json"


@functools.lru_cache(maxsize=1)
def reference_results() -> dict[str, Any]:
    """Published ImageNet top-1 per model name, with sources (see reference_results.json)."""
    return json.loads(_REFERENCE_FILE.read_text())


def as_published_models() -> tuple[str, ...]:
    """The weights of the as-published table: ours, the paper's peers and today's 82-84% timm picks."""
    return tuple(reference_results()["as_published"])


def eval_size(model: torch.nn.Module) -> tuple[int, float]:
    """(image size, crop fraction) the model's weights are evaluated at, from its pretrained cfg (as timm)."""
    cfg = model.pretrained_cfg
    size = cfg.get("test_input_size") or cfg["input_size"]
    return int(size[-1]), float(cfg.get("test_crop_pct") or cfg.get("crop_pct") or 0.875)


NO_REFERENCE: dict[str, Any] = {"imagenet_top1": None, "imagenet_top1_source": None}


def _published(name: str, as_published: bool) -> dict[str, Any]:
    """The published top-1 columns of a row: per weight at its eval size, or per architecture name."""
    table = reference_results()
    ref = table["as_published" if as_published else "models"].get(name)
    if ref is None:
        return NO_REFERENCE
    weights = name if as_published else ref["weights"]
    return {"imagenet_top1": ref["top1"], "imagenet_top1_source": f"{weights} @ {ref['img_size']}px, {ref['source']}"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _RssPeak:
    """Peak resident set size above the RSS at entry, sampled every ~1 ms in a thread (CPU memory estimate)."""

    def __init__(self, interval: float = 0.001):
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.base = self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> _RssPeak:
        self.base = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _peak_memory_mb(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(iters):
            fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    _release_free_heap()
    with _RssPeak() as rss:
        for _ in range(iters):
            fn()
    return rss.delta_mb


def _release_free_heap() -> bool:
    """Return freed heap pages to the OS (glibc malloc_trim) so the next step's RSS growth shows its real peak."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0)) if name else False
    except (OSError, AttributeError):
        return False


def _make_infer(model: torch.nn.Module, x: torch.Tensor, device: torch.device, amp: str) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), autocast(device, amp):
            model(x)

    return step


def _make_train(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: str
) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16" and device.type == "cuda")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def time_interleaved(
    steps: dict[Any, Callable[[], None]],
    warmup: int,
    repeats: int,
    iters: int,
    device: torch.device,
    desc: str,
    groups: Sequence[Sequence[Any]] | None = None,
) -> dict[Any, list[float]]:
    """Seconds per batch for every repeat of every step, steps interleaved.

    Each repeat runs every group once, the groups in rotating order and the steps of a group back to back
    (reversed every other repeat, so no step always follows the same one). Steps compared with each other
    belong in one group: their times in the same repeat are then taken under the same machine load, and
    `paired_ratio` of two steps is robust to the drift a shared machine shows. Default: one group per step.
    """
    groups = [list(g) for g in groups] if groups is not None else [[name] for name in steps]
    bar = evaluation_progress(len(steps) * (warmup + repeats * iters), desc, leave=True)
    try:
        for name in steps:
            for _ in range(warmup):
                steps[name]()
                bar.advance()
            _sync(device)
        times: dict[Any, list[float]] = {n: [] for n in steps}
        for r in range(repeats):
            for group in groups[r % len(groups) :] + groups[: r % len(groups)]:
                for name in group if r % 2 == 0 else group[::-1]:
                    _sync(device)
                    start = time.perf_counter()
                    for _ in range(iters):
                        steps[name]()
                    _sync(device)
                    times[name].append((time.perf_counter() - start) / iters)
                    bar.advance(iters)
    finally:
        bar.close()
    return times


def throughput_summary(per_batch: list[float], batch_size: int) -> dict[str, float]:
    rates = [batch_size / t for t in per_batch]
    med = statistics.median(rates)
    return {
        "img_per_s": round(med, 2),
        "img_per_s_min": round(min(rates), 2),
        "img_per_s_max": round(max(rates), 2),
        "spread_pct": round(100.0 * (max(rates) - min(rates)) / med, 1),
        "latency_ms": round(1000.0 * statistics.median(per_batch), 2),
    }


def paired_ratio(per_batch: list[float], reference_per_batch: list[float]) -> dict[str, float]:
    """Throughput relative to a reference, repeat by repeat: the median (and quartiles) over repeats of
    reference time / time. Each repeat's pair ran under the same load, so drift cancels out."""
    ratios = sorted(ref / t for t, ref in zip(per_batch, reference_per_batch, strict=True))
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"ratio": round(statistics.median(ratios), 3), "ratio_q1": round(quartiles[0], 3),
            "ratio_q3": round(quartiles[2], 3)}  # fmt: skip


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def benchmark(
    models: Sequence[str] = OURS + DEFAULT_PEERS,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    img_size: int = 224,
    amp: str = "none",
    channels_last: bool = False,
    compile: bool = False,
    train: bool = False,
    warmup: int = 2,
    repeats: int = 5,
    iters: int = 3,
    seed: int = 0,
    threads: int | None = None,
    as_published: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Measure every model in `models` under one configuration; returns a JSON-ready dict.

    `as_published`: each model runs at its own evaluation size (`img_size` is ignored) and its top-1 is
    the published one at that size; `models` are then weight names such as `resnet50.a1_in1k`.
    `device` None is cuda when available. `threads` sets torch's intra-op CPU threads for the run (restored
    afterwards); on a shared machine, fewer threads than cores keeps one busy neighbour from stalling every op.
    `model_kwargs` and `num_classes` go to every model's `create_model` (timm's --model-kwargs, --num-classes).
    """
    if threads is not None and threads < 1:
        raise TimmAssembleError(f"--threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _benchmark(
            models, device or default_device(), batch_size, img_size, amp, channels_last, compile, train, warmup,
            repeats, iters, seed, as_published, dict(model_kwargs or {}, **({} if num_classes is None else
            dict(num_classes=num_classes))),
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)


def _benchmark(
    models: Sequence[str],
    device: str,
    batch_size: int | None,
    img_size: int,
    amp: str,
    channels_last: bool,
    compile: bool,
    train: bool,
    warmup: int,
    repeats: int,
    iters: int,
    seed: int,
    as_published: bool,
    model_kwargs: dict[str, Any],
) -> dict[str, Any]:
    if len(set(models)) != len(models):
        raise TimmAssembleError("each model may appear only once in --models")
    if warmup < 0 or repeats < 1 or iters < 1 or img_size < 16:
        raise TimmAssembleError("need --repeats >= 1, --iters >= 1, --warmup >= 0 and --img-size >= 16")
    dev = resolve_device(device)
    if amp not in AMP_DTYPES:
        raise TimmAssembleError(f"--amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    if as_published and train:
        raise TimmAssembleError("--as-published times inference at each model's eval size; drop --train")
    batch = batch_size or (256 if dev.type == "cuda" else 8)
    gen = torch.Generator().manual_seed(seed)
    inputs: dict[int, torch.Tensor] = {}  # one random batch per input size, shared by the models of that size

    def batch_of(size: int) -> torch.Tensor:
        if size not in inputs:
            x = torch.randn(batch, 3, size, size, generator=gen).to(dev)
            inputs[size] = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        return inputs[size]

    built: dict[str, torch.nn.Module] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name in track(models, "build", leave=True):
        model = create_eval_model(name, pretrained=False, model_kwargs=model_kwargs).to(dev)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        size, crop_pct = eval_size(model) if as_published else (img_size, None)
        claims = [Claim("img_size", size, "--img-size"), Claim("batch_size", batch, "--batch-size")]
        check_batch(model, (3, size, size), batch, claims, training=train)
        flops = count_flops(model, (3, size, size), dev)
        rows[name] = {
            "model": name,
            "img_size": size,
            "crop_pct": crop_pct,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "gflops": None if flops is None else round(flops / 1e9, 3),
            "gmacs": None if flops is None else round(flops / 2e9, 3),
            **(NO_REFERENCE if model_kwargs else _published(name, as_published)),  # other kwargs: another network
        }
        if compile:
            try:
                model = torch.compile(model)
            except RuntimeError as err:
                raise TimmAssembleError(f"torch.compile failed for {name}: {err}") from err
        built[name] = model

    def phase(label: str, make: Callable[[str, torch.nn.Module], Callable[[], None]]) -> None:
        steps = {n: make(n, m) for n, m in built.items()}
        times = time_interleaved(steps, warmup, repeats, iters, dev, label)
        first = times[models[0]]
        for n in built:
            summary = throughput_summary(times[n], batch)
            rows[n].update({f"{label}_{k}": v for k, v in summary.items()})
            x_first = paired_ratio(first, times[n])  # img/s of the first model / img/s of this one
            rows[n].update({f"{label}_x_first": x_first["ratio"], f"{label}_x_first_q1": x_first["ratio_q1"],
                            f"{label}_x_first_q3": x_first["ratio_q3"]})  # fmt: skip
            rows[n][f"{label}_peak_mem_mb"] = round(_peak_memory_mb(steps[n], 1, dev), 1)

    for m in built.values():
        m.eval()
    phase("infer", lambda n, m: _make_infer(m, batch_of(rows[n]["img_size"]), dev, amp))
    if train:
        y = torch.randint(0, 1000, (batch,), generator=gen).to(dev)
        for m in built.values():
            m.train()
        phase("train", lambda n, m: _make_train(m, batch_of(img_size), y, dev, amp))

    return {
        "config": {
            "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "batch_size": batch,
            "img_size": "each model's eval size" if as_published else img_size,
            "as_published": as_published,
            "amp": amp,
            "channels_last": channels_last,
            "compile": compile,
            "warmup": warmup,
            "repeats": repeats,
            "iters_per_repeat": iters,
        },
        "memory_kind": (
            "CUDA max_memory_allocated during one step (weights + activations + workspace)"
            if dev.type == "cuda"
            else "CPU: peak RSS growth during one step (psutil, sampled every ~1 ms), after freed heap pages "
            "were returned to the OS (glibc malloc_trim): activations + workspace, weights excluded; an estimate"
        ),
        "flops_note": "forward FLOPs per image at img_size by torch.utils.flop_counter (GMACs = GFLOPs / 2)",
        "reference_sources": reference_results()["sources"],
        "models": [rows[n] for n in models],
    }


def format_table(result: dict[str, Any]) -> str:
    cfg = result["config"]
    has_train = "train_img_per_s" in result["models"][0]
    published = cfg.get("as_published", False)
    width = max(20, *(len(r["model"]) + 2 for r in result["models"]))
    head = (
        f"{'model':<{width}}{'px':>5}{'params(M)':>10}{'GMACs':>8}{'infer img/s':>13}{'spread':>8}{'ms/batch':>10}"
        f"{'mem MB':>8}"
        + f"{'x first':>9}"
        + (f"{'train img/s':>13}{'mem MB':>8}{'x first':>9}" if has_train else "")
        + f"{'top-1':>8}"
    )
    size = "each model at its own eval size" if published else f"{cfg['img_size']}px"
    lines = [
        f"{cfg['device_name']} ({cfg['device']}, {cfg['torch_threads']} threads), batch {cfg['batch_size']}, "
        f"{size}, amp {cfg['amp']}, channels_last {cfg['channels_last']}, compile {cfg['compile']}",
        head,
        "-" * len(head),
    ]
    for r in result["models"]:
        line = (
            f"{r['model']:<{width}}{r['img_size']:>5}{r['params_m']:>10.2f}"
            f"{r['gmacs'] if r['gmacs'] is not None else float('nan'):>8.2f}"
            f"{r['infer_img_per_s']:>13.1f}{'±' + format(r['infer_spread_pct'] / 2, '.0f') + '%':>8}"
            f"{r['infer_latency_ms']:>10.1f}{r['infer_peak_mem_mb']:>8.0f}{r['infer_x_first']:>8.2f}x"
        )
        if has_train:
            line += f"{r['train_img_per_s']:>13.1f}{r['train_peak_mem_mb']:>8.0f}{r['train_x_first']:>8.2f}x"
        top1 = r["imagenet_top1"]
        line += f"{top1:>8.2f}" if top1 is not None else f"{'-':>8}"
        lines.append(line)
    lines.append(
        f"img/s: median of {cfg['repeats']} interleaved repeats; spread: half the min-max range; x first: img/s of "
        f"{result['models'][0]['model']} / img/s of the row, the median over repeats of the ratio within a repeat."
    )
    if published:
        lines.append(
            f"top-1: published, at the model's eval size (sources: {', '.join(sorted(result['reference_sources']))}"
            " in reference_results.json)."
        )
    lines.append(f"mem: {result['memory_kind']}")
    return "\n".join(lines)


def plot_throughput(result: dict[str, Any], path: str) -> None:
    """Inference throughput vs published ImageNet top-1 (models without a known top-1 are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = result["config"]
    published = cfg.get("as_published", False)
    pts = [r for r in result["models"] if r["imagenet_top1"] is not None]
    if not pts:
        raise TimmAssembleError("--plot: none of the models has a known ImageNet top-1 in reference_results.json")
    fig = Figure(figsize=(7.5, 5))
    FigureCanvasAgg(fig)  # an Agg canvas for this figure only: no global backend switch
    ax = fig.subplots()
    for r in pts:
        ours = r["model"].startswith("assemble_")
        ax.scatter(r["infer_img_per_s"], r["imagenet_top1"], color="tab:red" if ours else "tab:blue", s=36)
        label = f"{r['model']} @{r['img_size']}" if published else r["model"]
        ax.annotate(label, (r["infer_img_per_s"], r["imagenet_top1"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
    layout = ", channels_last" if cfg["channels_last"] else ""
    size = "each at its eval size" if published else f"{cfg['img_size']}px"
    ax.set_xlabel(
        f"inference img/s: {cfg['device_name']} ({cfg['device']}, {cfg['torch_threads']} threads), "
        f"batch {cfg['batch_size']}, {size}, amp {cfg['amp']}{layout}",
        fontsize=8,
    )
    ax.set_ylabel("published ImageNet top-1 (%)" + (" at the eval size" if published else ""))
    ax.set_title("throughput vs accuracy (top-1: paper Table 7 for assemble_*, timm results for peers)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.25)  # room for the labels of the fastest models
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
