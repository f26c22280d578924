"""Recipes: flat YAML files of TrainingConfig + method config fields, with `key=value` overrides."""

import os
from dataclasses import asdict

import yaml
from transformers import HfArgumentParser

from .cgn_config import CgnTrainConfig
from .cgn_trainer import run_cgn
from .clip_pretrain_config import ClipPretrainConfig
from .clip_pretrain_trainer import run_clip_pretrain
from .config import TrainingConfig
from .inpainter_config import InpainterTrainConfig
from .inpainter_trainer import run_inpainter
from .pat_config import PatTrainConfig
from .pat_trainer import run_pat
from .robust_ft_config import RobustFtConfig
from .robust_ft_trainer import run_robust_ft

METHODS = {
    "pat": (PatTrainConfig, run_pat),
    "inpainter": (InpainterTrainConfig, run_inpainter),
    "cgn": (CgnTrainConfig, run_cgn),
    "clip_pretrain": (ClipPretrainConfig, run_clip_pretrain),
    "robust_ft": (RobustFtConfig, run_robust_ft),
}


def parse_overrides(overrides: list[str]) -> dict:
    """`["a=1", "mosaic.strength=0.8"]` -> {"a": 1, "mosaic": {"strength": 0.8}} (values parsed as YAML)."""
    out: dict = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value.")
        *parents, leaf = key.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def load_recipe(path: str, overrides: list[str] = ()) -> tuple[str, TrainingConfig, object]:
    """(method name, TrainingConfig, method config) from a recipe file and overrides."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"recipe {path} not found; recipes live under recipes/<method>/.")
    with open(path) as f:
        recipe = yaml.safe_load(f) or {}
    recipe = _merge(recipe, parse_overrides(list(overrides)))
    method = recipe.pop("method", None)
    if method not in METHODS:
        raise ValueError(f"recipe {path} must set method to one of {sorted(METHODS)}, got {method!r}.")
    train_cfg, method_cfg = HfArgumentParser((TrainingConfig, METHODS[method][0])).parse_dict(recipe)
    return method, train_cfg, method_cfg


def run_recipe(path: str, overrides: list[str] = ()) -> dict:
    """Load a recipe and run its method on the shared loop; returns the method's metrics."""
    method, train_cfg, method_cfg = load_recipe(path, overrides)
    os.makedirs(train_cfg.output_dir, exist_ok=True)
    with open(os.path.join(train_cfg.output_dir, "recipe.yaml"), "w") as f:
        yaml.safe_dump({"method": method, **asdict(train_cfg), **asdict(method_cfg)}, f, sort_keys=False)
    return METHODS[method][1](train_cfg, method_cfg)
