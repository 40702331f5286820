"""Top-1 / top-5 / loss of any timm model on an image folder, with the model's own eval preprocessing; under a
launch of several processes each scores its share of the images (`scoring.sharded_evaluation`)."""

import time
from typing import Any

from ..data.datasets import split_folder
from .data import ImageListDataset, index_image_folder, limit_samples, make_loader, resize_crop
from .model import model_data_config, model_from_options
from .options import eval_options, resolve_device
from .scoring import Scorer, Shard, run_scorers


def validate(model_name: str, data_dir: str, shard: Shard | None = None, **settings: Any) -> dict[str, Any]:
    """Evaluate `model_name` on `data_dir/<class>/<image>`, or on `data_dir/<split>/<class>/<image>` when the
    folder holds splits; `shard`: this process's share when several evaluate together (each returns the whole
    result); `settings` are `EvalOptions` fields."""
    opts = eval_options(model_name, **settings)
    folder, split = split_folder(data_dir, opts.split)
    dev = resolve_device(opts.device) if shard is None else shard.device(resolve_device(opts.device))
    model = model_from_options(opts, opts.reset_classifier)
    data_config = model_data_config(model, opts.data_config_args(), opts.batch_size)
    index = index_image_folder(folder, model.num_classes)
    samples = limit_samples(index.samples, opts.limit)
    samples = samples if shard is None else shard.take(samples)
    geometry = resize_crop(data_config)
    loader = make_loader(ImageListDataset(samples, lambda img, _: geometry(img)), opts.batch_size, opts.workers)
    scorer = Scorer(model, data_config, dev, opts.amp_mode, opts.channels_last)
    start = time.perf_counter()
    (metrics,) = run_scorers(loader, [scorer], f"validate {model_name}", shard)
    seconds = time.perf_counter() - start
    return {
        "model": model_name,
        "data_dir": str(data_dir),
        "split": split,  # None: data_dir holds the class folders itself
        "label_map": index.label_map,
        "num_classes": model.num_classes,
        "num_images": metrics["num_images"],
        "top1": round(metrics["top1"], 4),
        "top5": round(metrics["top5"], 4),
        "loss": round(metrics["loss"], 6),
        "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in data_config.items()},
        "device": str(dev),
        "processes": 1 if shard is None else shard.size,
        "amp": opts.amp_mode,
        "seconds": round(seconds, 3),
        "images_per_second": round(metrics["num_images"] / seconds, 2) if seconds > 0 else None,
    }
