"""Invariant classifiers from CGN counterfactuals (arXiv 2101.06046, sec. 3.3) on the shared loop.

A classifier is trained on real images, on counterfactuals (shape from one class, texture and
background from independently drawn ones), or on both; its shape labels are the only thing that stays
tied to the image, so it must classify by shape. With `ensemble=True` the model is the paper's
three-head ensemble (`InvariantEnsembleForImageClassification`): each head predicts its own
mechanism's class, so texture and background are learned where they belong, not in the shape head.
"""

from dataclasses import dataclass, field

import datasets
import torch
from accelerate.utils import set_seed

from ..data import ImageClassificationCollator
from ..models.cgn import InvariantEnsembleConfig, InvariantEnsembleForImageClassification
from .classification import build_image_classifier, fit_classifier
from .config import TrainingConfig

TRAINING_DATA = ("original", "counterfactual", "both")


@dataclass
class MechanismLabelsCollator(ImageClassificationCollator):
    """`ImageClassificationCollator` plus `texture_labels` / `background_labels` for the ensemble heads.

    Real CGN-variant rows name them `foreground` / `background`, counterfactual rows `texture` /
    `background`; the first column present is used. Missing or negative ids (no background class, as
    in colored items on black) become -100, which the heads ignore.
    """

    texture_columns: tuple[str, ...] = ("texture", "foreground")
    background_columns: tuple[str, ...] = ("background",)
    skipped: int = field(default=0, init=False)

    def _mechanism_id(self, example: dict, columns: tuple[str, ...]) -> int:
        value = next((example[c] for c in columns if example.get(c) is not None), -100)
        return int(value) if 0 <= int(value) < self.num_labels else -100

    def _targets(self, example: dict, index: int) -> tuple[int, int, int]:
        return (
            self._class_id(example, index),
            self._mechanism_id(example, self.texture_columns),
            self._mechanism_id(example, self.background_columns),
        )

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values, targets = self._collate(examples, self._targets)
        labels, texture, background = torch.tensor(targets, dtype=torch.long).reshape(-1, 3).T
        return {
            "pixel_values": pixel_values,
            "labels": labels,
            "texture_labels": texture,
            "background_labels": background,
        }


def as_training_rows(dataset: datasets.Dataset, mechanism_columns: bool) -> datasets.Dataset:
    """Keep `image`, `label` (and with `mechanism_columns` the texture / background ids, as `texture`,
    `background`), so real and counterfactual rows share one schema and can be concatenated."""
    rows = dataset
    if mechanism_columns:
        if "texture" not in rows.column_names:
            rows = rows.rename_column("foreground", "texture") if "foreground" in rows.column_names else rows
        for name in ("texture", "background"):
            if name not in rows.column_names:
                rows = rows.add_column(name, [-1] * len(rows))
        rows = rows.select_columns(["image", "label", "texture", "background"])
        return rows.cast_column("texture", datasets.Value("int64")).cast_column(
            "background", datasets.Value("int64")
        )
    return rows.select_columns(["image", "label"])


def invariant_training_set(
    real: datasets.Dataset,
    counterfactuals: datasets.Dataset | None,
    training_data: str,
    mechanism_columns: bool = False,
) -> datasets.Dataset:
    """The rows a classifier of `training_data` ('original', 'counterfactual' or 'both') is trained on."""
    if training_data not in TRAINING_DATA:
        raise ValueError(f"training_data must be one of {', '.join(TRAINING_DATA)}, got {training_data!r}.")
    if training_data != "original" and counterfactuals is None:
        raise ValueError(f"training_data={training_data!r} needs a counterfactual dataset.")
    parts = []
    if training_data in ("original", "both"):
        parts.append(as_training_rows(real, mechanism_columns))
    if training_data in ("counterfactual", "both"):
        parts.append(as_training_rows(counterfactuals, mechanism_columns))
    if len(parts) == 1:
        return parts[0]
    features = parts[0].features
    return datasets.concatenate_datasets([parts[0], parts[1].cast(features)])


def train_invariant_classifier(
    train_cfg: TrainingConfig,
    train_data: datasets.Dataset,
    eval_data: dict[str, datasets.Dataset],
    backbone_config: dict,
    image_size: int,
    ensemble: bool = False,
) -> tuple[torch.nn.Module, dict]:
    """Train a classifier (or the three-head ensemble) on `train_data`; accuracy on train and each eval split.

    `train_data` needs `image` and `label` (and `texture` / `background` ids for the ensemble, see
    `invariant_training_set`). The model and its image processor are saved to `train_cfg.output_dir`.
    """
    names = train_data.features["label"].names
    if ensemble:
        collator = MechanismLabelsCollator(len(names), image_size)
        config = InvariantEnsembleConfig(
            backbone_config=dict(backbone_config),
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
        )
        set_seed(train_cfg.seed)
        model = InvariantEnsembleForImageClassification(config)
    else:
        collator = ImageClassificationCollator(len(names), image_size)
        set_seed(train_cfg.seed)
        model = build_image_classifier(backbone_config, names)
    return fit_classifier(train_cfg, model, collator, train_data, eval_data)


__all__ = [
    "MechanismLabelsCollator",
    "TRAINING_DATA",
    "invariant_training_set",
    "train_invariant_classifier",
]
