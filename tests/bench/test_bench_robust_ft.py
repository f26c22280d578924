"""The robust fine-tuning benchmark at its smoke scale: every model and figure the issue asks for."""

import json
import os
from pathlib import Path

import datasets
import pytest

from hf_counterfactual.bench.robust_ft import run_robust_ft_benchmark
from hf_counterfactual.cli import main
from hf_counterfactual.data import FASHION_MNIST_LABELS


def _labels_only(names) -> datasets.DatasetDict:
    """What the fakes' benchmark data needs: a train split with the item source's class names."""
    features = datasets.Features({"label": datasets.ClassLabel(names=list(names))})
    return datasets.DatasetDict(train=datasets.Dataset.from_dict({"label": [0]}, features=features))


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
        return _labels_only(FASHION_MNIST_LABELS)

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
    result = json.loads(out.read_text())
    assert result["scale"] == "medium" and result["items"] == ["fashion_mnist"]
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


def _fake_runs(monkeypatch, calls: list) -> None:
    """Pre-training and fine-tuning replaced by fakes that write metrics.json as the real ones do, last."""
    import hf_counterfactual.bench.robust_ft as bench

    def fake_pretrain(train_cfg, clip_cfg, data):
        calls.append("clip_pretrain")
        metrics = {"zero_shot_accuracy": {"test_id": 0.5}}
        os.makedirs(train_cfg.output_dir, exist_ok=True)
        (Path(train_cfg.output_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    def fake_ft(train_cfg, cfg, data):
        name = Path(train_cfg.output_dir).name
        calls.append(name)
        scores = {"id_accuracy": 0.9 - 0.01 * len(calls), "ood_accuracy": 0.7 + 0.01 * len(calls)}
        metrics = {cfg.variant: scores, "wise_ft": {"0.5": scores}, "step_seconds": float(len(name))}
        if cfg.variant == "zero_shot":
            metrics["step_seconds"] = None
        os.makedirs(train_cfg.output_dir, exist_ok=True)
        (Path(train_cfg.output_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(bench, "build_background_shift", lambda cfg: _labels_only(FASHION_MNIST_LABELS))
    monkeypatch.setattr(bench, "run_clip_pretrain", fake_pretrain)
    monkeypatch.setattr(bench, "run_robust_ft", fake_ft)


def test_bench_robust_ft_split_over_runs_then_merged_with_resume(monkeypatch, tmp_path):
    """The full scale split over two runs into one output dir (`--models`), merged by a third with `--resume`
    that trains nothing and reports every model, the step costs against the first run's vanilla FT."""
    from hf_counterfactual.bench.robust_ft import scale_models

    calls = []
    _fake_runs(monkeypatch, calls)
    everything = scale_models("full")
    first, second = everything[:6], everything[6:]
    args = ["bench", "robust-ft", "--scale", "full", "--seeds", "0", "--output-dir", str(tmp_path)]
    main([*args, "--models", *reversed(first), "--json", str(tmp_path / "a.json")])
    assert calls == ["clip_pretrain", *first]  # the scale's order, whatever the order asked
    part = json.loads((tmp_path / "a.json").read_text())
    assert set(part["models"]) == {*first, "wise_ft"} and set(part["targets_met"]) == set(first[4:])

    calls.clear()
    main([*args, "--resume", "--models", *second, "--json", str(tmp_path / "b.json")])
    assert calls == second  # the pre-trained CLIP of the first run
    part = json.loads((tmp_path / "b.json").read_text())
    assert set(part["models"]) == set(second)
    assert part["masked_cf_vs_vanilla"] == {} and part["targets_met"] == {}  # no vanilla FT in this run
    assert "step_cost_vs_vanilla" not in part["models"][second[0]]

    calls.clear()
    main([*args, "--resume", "--json", str(tmp_path / "all.json")])
    assert calls == []
    result = json.loads((tmp_path / "all.json").read_text())
    assert set(result["models"]) == {*everything, "wise_ft"}
    vanilla = result["models"]["vanilla_ft"]
    masked = result["models"]["masked_cf_random_multi"]
    assert masked["step_cost_vs_vanilla"] == pytest.approx(len("masked_cf_random_multi") / len("vanilla_ft"))
    assert result["masked_cf_vs_vanilla"]["masked_cf_random_multi"]["ood_gain_points"] == pytest.approx(
        100 * (masked["ood_acc"] - vanilla["ood_acc"])
    )
    assert set(result["targets_met"]) == set(everything[4:])
    assert result["per_seed"][0]["pretrain_zero_shot"] == {"test_id": 0.5}

    calls.clear()
    main([*args, "--json", str(tmp_path / "again.json")])  # without --resume everything is trained anew
    assert calls == ["clip_pretrain", *everything]


def test_bench_robust_ft_medium_models_resume_into_the_full_scale(monkeypatch, tmp_path):
    """`medium` and `full` share their settings, so a full run goes on from a medium run's models."""
    calls = []
    _fake_runs(monkeypatch, calls)
    args = ["--seeds", "0", "--output-dir", str(tmp_path)]
    run_robust_ft_benchmark("medium", seeds=[0], output_dir=str(tmp_path), show_progress=False)
    calls.clear()
    main(["bench", "robust-ft", "--scale", "full", *args, "--resume", "--models", "masked_cf_object_single",
          "masked_cf_random_none", "--json", str(tmp_path / "full.json")])  # fmt: skip
    assert calls == ["masked_cf_random_none"]
    assert json.loads((tmp_path / "full.json").read_text())["items"] == ["fashion_mnist"]


def test_bench_robust_ft_records_the_digits_auto_fell_back_to(monkeypatch, tmp_path):
    import hf_counterfactual.bench.robust_ft as bench

    _fake_runs(monkeypatch, [])
    monkeypatch.setattr(
        bench, "build_background_shift", lambda cfg: _labels_only([str(d) for d in range(10)])
    )
    result = run_robust_ft_benchmark("smoke", output_dir=str(tmp_path), show_progress=False)
    assert result["items"] == ["digits"] and result["per_seed"][0]["items"] == "digits"


def test_bench_robust_ft_resume_refuses_other_settings(monkeypatch, tmp_path):
    calls = []
    _fake_runs(monkeypatch, calls)
    run_robust_ft_benchmark("smoke", output_dir=str(tmp_path), show_progress=False)
    with pytest.raises(ValueError, match=r"seed0 was measured with \{.*'bias': 0.8.*use another output_dir"):
        run_robust_ft_benchmark("medium", seeds=[0], output_dir=str(tmp_path), resume=True)
    (tmp_path / "seed0" / "bench_run.json").unlink()
    with pytest.raises(ValueError, match="has no bench_run.json to tell what it was measured with"):
        run_robust_ft_benchmark("smoke", output_dir=str(tmp_path), resume=True)


def test_bench_robust_ft_rejects_unknown_models(tmp_path):
    with pytest.raises(
        ValueError, match=r"scale 'quick' has no model \['masked_cf_random_none'\]; it has zero_shot,"
    ):
        run_robust_ft_benchmark(
            "quick", output_dir=str(tmp_path), models=["vanilla_ft", "masked_cf_random_none"]
        )
