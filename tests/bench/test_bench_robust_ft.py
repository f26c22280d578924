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


def test_bench_robust_ft_medium_scale_reaches_every_run(monkeypatch, tmp_path):
    """`--scale medium`: the medium CLIP, bias 0.8, pre-training lr / batch, 20 epochs and w = 2 reach the runs."""
    import hf_counterfactual.bench.robust_ft as bench

    seen = {"ft": []}

    def fake_shift(cfg):
        seen["shift"] = cfg
        return "data"

    def fake_pretrain(train_cfg, clip_cfg, data):
        seen["pretrain"], seen["clip"] = train_cfg, clip_cfg
        return {"zero_shot_accuracy": 0.5}

    def fake_ft(train_cfg, cfg, data):
        seen["ft"].append((train_cfg, cfg))
        scores = {"id_accuracy": 0.9, "ood_accuracy": 0.7}
        return {cfg.variant: scores, "wise_ft": {"0.5": scores}, "step_seconds": 1.0}

    monkeypatch.setattr(bench, "build_background_shift", fake_shift)
    monkeypatch.setattr(bench, "run_clip_pretrain", fake_pretrain)
    monkeypatch.setattr(bench, "run_robust_ft", fake_ft)
    out = tmp_path / "medium.json"
    main(
        [
            "bench",
            "robust-ft",
            "--scale",
            "medium",
            "--seeds",
            "1",
            "--output-dir",
            str(tmp_path),
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["scale"] == "medium"
    shift = seen["shift"]
    assert (shift.bias, shift.num_pretrain, shift.num_train, shift.seed) == (0.8, 20_000, 8000, 1)
    assert (seen["clip"].vision_hidden_size, seen["clip"].vision_layers) == (128, 4)
    assert (seen["pretrain"].learning_rate, seen["pretrain"].batch_size) == (1e-3, 256)
    variants = [cfg.variant for _, cfg in seen["ft"]]
    assert variants == ["zero_shot", "linear_probe", "vanilla_ft", "ft_distill", "masked_cf"]
    for train_cfg, cfg in seen["ft"]:
        assert (train_cfg.num_epochs, cfg.distill_weight, cfg.base_model) == (
            20,
            2.0,
            str(tmp_path / "seed1" / "clip_pretrain"),
        )
    masked = seen["ft"][-1][1]
    assert (masked.masking_strategy, masked.masking_refill) == ("object", "single")
