"""The same recipe as 1 process and as 2 CPU processes (gloo, `accelerate launch`) reports the same metrics."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.training.test_recipes import RECIPES, TINY

# ViT has no BatchNorm, so per-process batch statistics cannot make the two runs differ.
VIT = (
    "backbone_config={model_type: vit, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 32, image_size: 32, patch_size: 8}"
)


def _train(out, launcher: list[str]) -> dict:
    # zoom_crop=0: random augmentation draws differ between 1 and 2 processes, as any augmentation's would
    overrides = [o for o in TINY if not o.startswith("backbone_config")] + [
        VIT,
        "zoom_crop=0",
        f"output_dir={out}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [
        *launcher,
        "-m",
        "hf_counterfactual.cli",
        "train",
        os.path.join(RECIPES, "mosaics_pat_t_small.yaml"),
        *overrides,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.skipif(
    shutil.which("accelerate") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
    reason="accelerate CLI missing",
)
def test_two_process_recipe_reports_the_same_metrics(tmp_path):
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    one = _train(tmp_path / "one", [sys.executable])
    two = _train(tmp_path / "two", [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                    "--mixed_precision", "no", "--dynamo_backend", "no"])  # fmt: skip
    for key in ("map", "cfpr", "ctpr", "cond_auroc"):
        assert two["pat_t"][key] == pytest.approx(one["pat_t"][key], abs=1e-4), key
