"""The FIDO benchmark at its smoke scale: every figure the issue asks for is present and sane."""

import json
import os

import pytest

from hf_counterfactual.bench.fido import (
    FIDO_LAMBDA_SCALE,
    FIDO_MASK_SCALE,
    method_names,
    paper_settings,
    run_fido_benchmark,
)
from hf_counterfactual.explain import FidoConfig

METRICS = {"deletion_auc", "insertion_auc", "pointing_game", "mask_iou", "dabkowski_gal", "seconds_per_map"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("fido_bench")
    return run_fido_benchmark("smoke", item_source="digits", output_dir=str(out), show_progress=False)


def test_every_method_reports_every_metric(smoke):
    infillers = ["mean", "blur", "noise", "local", "generative"]
    names = method_names(dict.fromkeys(infillers))
    assert list(smoke["methods"]) == names
    assert "fido-ssr-generative" in names and "bbmp" in names and "gradcam" in names
    for name, m in smoke["methods"].items():
        assert set(m) == METRICS, name
        assert 0 <= m["pointing_game"] <= 1 and 0 <= m["mask_iou"] <= 1
        assert 0 <= m["deletion_auc"] <= 1 and 0 <= m["insertion_auc"] <= 1
        assert m["seconds_per_map"] > 0
    json.dumps(smoke)  # JSON-serialisable as written by the CLI


def test_speedup_generative_effect_sanity_and_figure(smoke):
    assert smoke["speedup_vs_reference"] == pytest.approx(
        smoke["reference_seconds_per_map"] / smoke["ours_seconds_per_map"]
    )
    assert smoke["reference_maps"] == 1
    assert set(smoke["generative_effect"]["pointing_game"]) == {"generative", "blur", "mean"}
    assert set(smoke["sanity_check"]) == {smoke["best_fido_ssr"], "gradcam"}
    for check in smoke["sanity_check"].values():
        assert -1 <= check["rank_correlation"] <= 1
    assert os.path.getsize(smoke["figure"]) > 0
    assert smoke["inpainter"]["l1_dropped"]["generative"] > 0
    assert set(smoke["targets_met"]) == {"speedup", "pointing_game"}
    # our FIDO runs at FIDO_LAMBDA_SCALE x the rescaled paper lambda; the reference at the paper's
    settings = smoke["settings"]
    assert settings["fido"]["lambda_"] == pytest.approx(FIDO_LAMBDA_SCALE * settings["lambda_"])
    assert settings["fido"]["mask_size"] == FIDO_MASK_SCALE * settings["mask_size"]
    assert smoke["reference_settings"]["lambda_"] == pytest.approx(settings["lambda_"])


def test_paper_settings_rescale_to_the_canvas():
    at_224 = paper_settings(224)
    assert at_224["mask_size"] == 56 and at_224["lambda_"] == pytest.approx(1e-3)
    at_64 = paper_settings(64)
    assert at_64["mask_size"] == 16
    # the sparsity weight summed over all pixels stays the same: lambda * H * W
    assert at_64["lambda_"] * 64**2 == pytest.approx(1e-3 * 224**2)
    assert FidoConfig.for_image_size(64, steps=5).steps == 5
