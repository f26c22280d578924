"""The robust fine-tuning benchmark at its smoke scale: every model and figure the issue asks for."""

import json

import pytest

from hf_counterfactual.bench.robust_ft import run_robust_ft_benchmark
from hf_counterfactual.cli import main

MODELS = {"zero_shot", "linear_probe", "vanilla_ft", "wise_ft", "ft_distill", "masked_cf_object_single"}


def test_bench_robust_ft_cli_writes_every_figure(tmp_path, monkeypatch):
    import hf_counterfactual.bench.robust_ft as bench

    monkeypatch.setitem(bench.SCALES, "quick", bench.SCALES["smoke"])
    out = tmp_path / "robust_ft.json"
    main(["bench", "robust-ft", "--quick", "--output-dir", str(tmp_path), "--json", str(out)])
    result = json.loads(out.read_text())
    assert set(result["models"]) == MODELS
    for name, m in result["models"].items():
        assert 0 <= m["id_acc"] <= 1 and 0 <= m["ood_acc"] <= 1, name
    for name in MODELS - {"zero_shot", "wise_ft"}:
        assert result["models"][name]["step_cost_vs_vanilla"] > 0
    assert result["models"]["vanilla_ft"]["step_cost_vs_vanilla"] == 1.0
    gain = result["masked_cf_vs_vanilla"]["masked_cf_object_single"]
    masked, vanilla = result["models"]["masked_cf_object_single"], result["models"]["vanilla_ft"]
    assert gain["ood_gain_points"] == pytest.approx(100 * (masked["ood_acc"] - vanilla["ood_acc"]))
    assert set(result["targets_met"]) == {"masked_cf_object_single"}


def test_bench_robust_ft_rejects_unknown_scale():
    with pytest.raises(ValueError, match="scale must be one of"):
        run_robust_ft_benchmark("huge")
