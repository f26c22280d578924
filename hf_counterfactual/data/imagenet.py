"""ImageNet class metadata shipped with the package, for the paper-scale robust fine-tuning recipe.

WordNet ids of the 1000 classes in label order, CLIP's curated class names and its 80 prompt templates (as
OpenAI's zero-shot notebook and open_clip list them), and the 200-class subsets of ImageNet-R and
ImageNet-A. An evaluation set whose classes are not the model's (R and A: 200 of the 1000; ObjectNet: 113
classes, each one or more ImageNet classes) is scored through *class groups*: per class of the set, the model
classes it stands for; a set's logit for a class is the largest of its group's logits, so predictions are
restricted to the classes the set can contain (the protocol of the ImageNet-R / -A papers and WiSE-FT).
"""

import json
import os
from importlib import resources

import torch

CLASS_SUBSETS = ("imagenet_r", "imagenet_a")


def _lines(name: str) -> list[str]:
    text = resources.files(__package__).joinpath("imagenet", name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


def imagenet_wnids() -> list[str]:
    """WordNet ids of the 1000 ImageNet-1k classes, index = class id (sorted, as the ILSVRC folders)."""
    return _lines("wnids.txt")


def imagenet_class_names() -> list[str]:
    """CLIP's curated names of the 1000 classes (readable prompts: "great white shark", "kite (bird of prey)")."""
    return _lines("clip_class_names.txt")


def imagenet_templates() -> list[str]:
    """CLIP's 80 ImageNet prompt templates ("a bad photo of a {}.", ...)."""
    return _lines("clip_templates.txt")


def class_subset(name: str) -> list[int]:
    """ImageNet class ids of a 200-class subset ("imagenet_r" / "imagenet_a"), in the subset's label order
    (its sorted WordNet ids, the class folders of its release)."""
    if name not in CLASS_SUBSETS:
        raise ValueError(f"unknown class subset {name!r}; known: {', '.join(CLASS_SUBSETS)}.")
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    return [index[wnid] for wnid in _lines(f"{name}_wnids.txt")]


def check_class_groups_spec(spec: str) -> None:
    """Raise unless `spec` names a class subset or an existing file (its content is read by `class_groups`)."""
    if spec not in CLASS_SUBSETS and not os.path.isfile(spec):
        raise ValueError(
            f"class_groups {spec!r} is neither a known subset ({', '.join(CLASS_SUBSETS)}) nor a JSON file."
        )


def class_groups(spec: str, num_classes: int) -> list[list[int]]:
    """Model classes behind each class of an evaluation set, from a subset name or a JSON file.

    `spec` is "imagenet_r" / "imagenet_a" (one ImageNet class per class of the set) or the path of a JSON
    list holding, per class of the set in its label order, a list of model class ids (ObjectNet: build it
    from the release's `mappings/objectnet_to_imagenet_1k.json`). Every id must lie in [0, num_classes).
    """
    check_class_groups_spec(spec)
    if spec in CLASS_SUBSETS:
        groups = [[i] for i in class_subset(spec)]
    else:
        with open(spec) as f:
            groups = json.load(f)
        if not isinstance(groups, list) or not groups or not all(isinstance(g, list) and g for g in groups):
            raise ValueError(f"{spec} must hold a JSON list of non-empty lists of class ids, one per class.")
    for group in groups:
        if not all(isinstance(i, int) and 0 <= i < num_classes for i in group):
            raise ValueError(f"class group {group} of {spec} has ids outside [0, {num_classes}).")
    return groups


def objectnet_class_groups(mappings_dir: str) -> list[list[int]]:
    """ImageNet class ids of each ObjectNet class that has any, from the `mappings/` folder of the ObjectNet
    release, in the label order of its ImageNet-overlap evaluation (the classes' folder names sorted, as
    WiSE-FT and clip-benchmark's `wds_objectnet` number them). Save it as JSON for `class_groups`.
    """

    def read(name: str):
        with open(os.path.join(mappings_dir, name)) as f:
            return json.load(f)

    folder_of = {label: folder for folder, label in read("folder_to_objectnet_label.json").items()}
    torch_id_of = {int(v): int(k) for k, v in read("pytorch_to_imagenet_2012_id.json").items()}
    with open(os.path.join(mappings_dir, "imagenet_to_label_2012_v2")) as f:
        id_of_name = {line.strip(): torch_id_of[i] for i, line in enumerate(f)}
    groups = {
        folder_of[label]: [id_of_name[name] for name in names.split("; ")]
        for label, names in read("objectnet_to_imagenet_1k.json").items()
    }
    return [groups[folder] for folder in sorted(groups)]


def grouped_logits(logits: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """(N, len(groups)) logits of an evaluation set's classes: the largest model logit of each group."""
    return torch.stack([logits[:, group].amax(dim=1) for group in groups], dim=1)
