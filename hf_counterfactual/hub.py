"""Model cards and `push_to_hub` for trained hf-counterfactual models (`hf-counterfactual card` / `push`).

`write_model_card` renders a `model_cards/<method>.md` Jinja template with `huggingface_hub.ModelCard`;
`push_to_hub` uploads a saved model folder together with the code `trust_remote_code` needs, so the
repository loads with `AutoModel` / `DiffusionPipeline` without hf-counterfactual installed.
"""

import importlib
import inspect
import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .models.cgn import (
    CGNConfig,
    CounterfactualGenerativeNetwork,
    InvariantEnsembleConfig,
    InvariantEnsembleForImageClassification,
)
from .models.inpainter import InpaintingPipeline
from .models.pat import PatConfig, PatForMultiLabelClassification
from .robust import ClipImageClassifier, ClipImageClassifierConfig

logger = logging.getLogger(__name__)

MODEL_CARDS_DIR = Path(__file__).resolve().parent.parent / "model_cards"

# Folders a training run writes next to the model that are not part of it (accelerate state, trackers).
TRAINING_STATE = ("checkpoints", "logs", "runs", "wandb")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OUTSIDE_IMPORT = re.compile(
    r"^\s*(from\s+\.\.|from\s+hf_counterfactual\b|import\s+hf_counterfactual\b).*", re.M
)
SIBLING_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import", re.M)

# model_type -> the auto_map written into config.json: auto class -> class whose module is uploaded.
REMOTE_CODE = {
    "pat": {
        "AutoConfig": PatConfig,
        "AutoModel": PatForMultiLabelClassification,
        "AutoModelForImageClassification": PatForMultiLabelClassification,
    },
    "cgn": {"AutoConfig": CGNConfig, "AutoModel": CounterfactualGenerativeNetwork},
    "cgn_invariant_ensemble": {
        "AutoConfig": InvariantEnsembleConfig,
        "AutoModelForImageClassification": InvariantEnsembleForImageClassification,
    },
    "clip_image_classifier": {
        "AutoConfig": ClipImageClassifierConfig,
        "AutoModelForImageClassification": ClipImageClassifier,
    },
}
PIPELINES = {"InpaintingPipeline": InpaintingPipeline}


@dataclass(frozen=True)
class CardSpec:
    """A method's card: its template, library, Hub pipeline tag and the metrics it reports (key -> label)."""

    template: str
    library_name: str
    pipeline_tag: str
    metrics: dict[str, str]


MULTILABEL_METRICS = {
    "map": "mAP",
    "cfpr": "CFPR(i|j), mean over the biased pairs",
    "ctpr": "CTPR(i|j), mean over the biased pairs",
    "cond_auroc": "conditional AUROC",
}
CARDS = {
    "pat": CardSpec("pat.md", "transformers", "image-classification", MULTILABEL_METRICS),
    "classifier": CardSpec(
        "classifier.md",
        "transformers",
        "image-classification",
        {
            "accuracy": "accuracy",
            "zero_shot_accuracy": "zero-shot accuracy",
            **MULTILABEL_METRICS,
            "id_accuracy": "in-distribution accuracy",
            "ood_accuracy": "out-of-distribution accuracy",
        },
    ),
    "cgn": CardSpec(
        "cgn.md",
        "transformers",
        "unconditional-image-generation",
        {
            "cgn_vs_oracle": "test accuracy",
            "mask_iou": "mask IoU with the true item masks",
            "mask_mean": "mask mean",
            "mask_binariness": "mask binariness",
            "images_per_second": "images per second",
        },
    ),
    "inpainter": CardSpec(
        "inpainter.md",
        "diffusers",
        "image-to-image",
        {
            "pointing_game": "pointing game",
            "deletion_auc": "deletion AUC",
            "insertion_auc": "insertion AUC",
            "mask_iou": "saliency mask IoU",
            "dabkowski_gal": "Dabkowski-Gal saliency metric",
            "l1_dropped": "L1 error on the dropped pixels",
        },
    ),
    "robust_ft": CardSpec(
        "robust_ft.md",
        "transformers",
        "image-classification",
        {"id_accuracy": "in-distribution accuracy", "ood_accuracy": "out-of-distribution accuracy"},
    ),
}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: save the model with save_pretrained first.")
    return json.loads(path.read_text())


def _flatten(metrics: dict, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    """(path, value) for every finite number in a nested metrics dict; lists and strings are skipped."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _flatten(value, (*prefix, str(key)))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            yield (*prefix, str(key)), value


def card_metrics(method: str, metrics: dict) -> list[dict]:
    """Rows of a card's "Counterfactual robustness" table: the numbers of `metrics` under a key the method reports.

    Nested dicts become settings: `{"pat_t": {"map": 0.8}}` gives a row with label "mAP" and setting "pat_t".
    """
    known = CARDS[method].metrics
    rows = []
    for path, value in _flatten(metrics):
        key = next((part for part in path if part in known), None)
        if key is None:
            continue
        setting = " / ".join(part for part in path if part != key)
        row = {"key": key, "label": known[key], "setting": setting, "value": value, "display": f"{value:.4g}"}
        rows.append(row)
    return rows


def infer_method(model_dir: str | Path) -> str:
    """The card method of a saved folder: "inpainter" for a diffusers pipeline, else by config.json's model_type."""
    model_dir = Path(model_dir)
    if (model_dir / "model_index.json").is_file():
        return "inpainter"
    model_type = _read_json(model_dir / "config.json").get("model_type")
    return {"pat": "pat", "cgn": "cgn", "clip_image_classifier": "robust_ft"}.get(model_type, "classifier")


def write_model_card(
    model_dir: str | Path,
    method: str,
    metrics: dict,
    *,
    dataset: str | None = None,
    base_model: str | None = None,
    training_config: dict | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """Render `model_cards/<method>.md` with the measured `metrics` and save it as `model_dir/README.md`."""
    if method not in CARDS:
        raise ValueError(f"method must be one of {sorted(CARDS)}, got {method!r}.")
    spec, model_dir = CARDS[method], Path(model_dir)
    template = MODEL_CARDS_DIR / spec.template
    if not template.is_file():
        raise FileNotFoundError(f"model card template {template} not found; templates live in model_cards/.")
    config = _read_json(
        model_dir / ("model_index.json" if spec.library_name == "diffusers" else "config.json")
    )
    rows = card_metrics(method, metrics)
    model_name = repo_id or model_dir.resolve().name
    eval_results = [
        EvalResult(
            task_type=spec.pipeline_tag,
            dataset_type=dataset or "custom",
            dataset_name=dataset or "custom",
            metric_type=row["key"],
            metric_name=f"{row['label']} ({row['setting']})" if row["setting"] else row["label"],
            metric_value=row["value"],
        )
        for row in rows
    ]
    remote_code = config.get("model_type") in REMOTE_CODE or spec.library_name == "diffusers"
    card_data = ModelCardData(
        license="apache-2.0",
        library_name=spec.library_name,
        pipeline_tag=spec.pipeline_tag,
        tags=["hf-counterfactual", method, "counterfactual-robustness"],
        base_model=base_model,
        datasets=[dataset] if dataset else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    recall_target = next((v for path, v in _flatten(metrics) if path[-1] == "recall_target"), None)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        model_id=repo_id or str(model_dir),
        config=config,
        metrics=rows,
        recall_target=recall_target,
        dataset=dataset,
        remote_code=remote_code,
        training_config=json.dumps(training_config, indent=2, default=str) if training_config else None,
    )
    card.save(model_dir / "README.md")
    return card


def _files_to_upload(model_dir: Path) -> list[Path]:
    """Files of a saved model folder, relative to it, without training state; refuses unsafe or missing weights."""
    if not (model_dir / "config.json").is_file() and not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} has no config.json (or model_index.json): push a folder written by save_pretrained."
        )
    files = [
        path.relative_to(model_dir)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.relative_to(model_dir).parts[0] not in TRAINING_STATE
    ]
    pickled = [str(f) for f in files if f.suffix in PICKLE_SUFFIXES]
    if pickled:
        raise ValueError(
            f"{model_dir} holds non-safetensors weights {pickled}: only safetensors are pushed; re-save with "
            "save_pretrained (safetensors is its default) and remove them."
        )
    if not any(f.suffix == ".safetensors" for f in files):
        raise FileNotFoundError(
            f"{model_dir} has no .safetensors weights: save the model with save_pretrained."
        )
    return files


def _code_files(module_file: Path) -> list[Path]:
    """`module_file` and the sibling modules it imports relatively; refuses imports from outside its folder."""
    files, todo = [], [module_file]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        text = path.read_text()
        outside = OUTSIDE_IMPORT.search(text)
        if outside:
            raise ValueError(
                f"{path.name} imports outside its folder ({outside.group(0).strip()!r}), so it cannot run as "
                "remote code; make the model's modules import only each other."
            )
        files.append(path)
        todo += [path.parent / f"{name}.py" for name in SIBLING_IMPORT.findall(text)]
    return files


def _copy_code(cls: type, folder: Path) -> str:
    """Copy the module defining `cls` (and its sibling imports) into `folder`; returns "module.Class"."""
    module_file = Path(inspect.getfile(cls))
    folder.mkdir(parents=True, exist_ok=True)
    for path in _code_files(module_file):
        shutil.copyfile(path, folder / path.name)
    return f"{module_file.stem}.{cls.__name__}"


def add_remote_code(folder: str | Path) -> None:
    """Copy the model's code into a saved `folder` and point config.json (auto_map) or model_index.json at it."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        config = _read_json(folder / "config.json")
        classes = REMOTE_CODE.get(config.get("model_type"))
        if classes is None:  # a transformers model: loads without remote code
            return
        config["auto_map"] = {auto: _copy_code(cls, folder) for auto, cls in classes.items()}
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return
    index = _read_json(folder / "model_index.json")
    for name, value in index.items():
        if isinstance(value, list) and str(value[0]).startswith("hf_counterfactual."):
            cls = getattr(importlib.import_module(value[0]), value[1])
            index[name] = _copy_code(cls, folder / name).split(".")
    pipeline = PIPELINES.get(index["_class_name"]) if isinstance(index["_class_name"], str) else None
    if pipeline is not None:
        index["_class_name"] = _copy_code(pipeline, folder).split(".")
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def save_metrics_and_card(
    output_dir: str | Path,
    method: str,
    metrics: dict,
    *,
    dataset: str | None = None,
    training_config: dict | None = None,
) -> None:
    """What every training run leaves next to its model: metrics.json and a model card (README.md) built from it."""
    with open(Path(output_dir) / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    write_model_card(output_dir, method, metrics, dataset=dataset, training_config=training_config)


def finished_metrics(output_dir: str | Path) -> dict | None:
    """The metrics.json a training run left in `output_dir`, or None. `save_metrics_and_card` writes it last,
    after the model, so its presence means the run finished (what a resumed benchmark keeps)."""
    path = Path(output_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload a saved model folder and its remote code to `repo_id` (created if missing); returns the repo URL."""
    model_dir = Path(model_dir)
    files = _files_to_upload(model_dir)
    if Path("README.md") not in files:
        logger.warning("%s has no README.md; write one with write_model_card first.", model_dir)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as staged:
        for rel in files:
            (Path(staged) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_dir / rel, Path(staged) / rel)
        add_remote_code(staged)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=staged,
            revision=revision,
            commit_message=f"Upload {model_dir.resolve().name} with hf-counterfactual",
        )
    return str(repo_url)


__all__ = [
    "CARDS",
    "add_remote_code",
    "card_metrics",
    "finished_metrics",
    "infer_method",
    "push_to_hub",
    "save_metrics_and_card",
    "write_model_card",
]
