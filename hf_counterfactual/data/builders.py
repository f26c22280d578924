"""What the benchmark builders share: per-class item pools and a config stored in the dataset's info."""

import json
from dataclasses import asdict

import datasets
import numpy as np


def item_pools(source: datasets.Dataset) -> dict[int, np.ndarray]:
    """class id -> (n, h, w) float32 grayscale items in [0, 1], from an (image, label) source split."""
    images = np.stack([np.asarray(im.convert("L"), dtype=np.float32) / 255.0 for im in source["image"]])
    labels = np.asarray(source["label"])
    return {int(c): images[labels == c] for c in np.unique(labels)}


def builder_description(builder: str, config) -> str:
    """JSON for `DatasetInfo.description`: the builder's name and its config, so data can be rebuilt."""
    return json.dumps({"builder": builder, **asdict(config)})


def builder_config_of(dataset: datasets.Dataset, builder: str, config_cls):
    """The `config_cls` a split was built with by `builder` (also after `load_from_disk`)."""
    try:
        meta = json.loads(dataset.info.description or "")
    except json.JSONDecodeError:
        meta = {}
    if meta.pop("builder", None) != builder:
        raise ValueError(f"this dataset was not made by build_{builder} (no config in its info).")
    return config_cls(**meta)
