"""The CGN benchmark at its smoke scale: every figure the issue asks for is present, sane and consistent."""

import json

import pytest

from hf_counterfactual.bench.cgn import run_cgn_benchmark
from hf_counterfactual.cli import main

FIGURES = {
    "acc_original_train",
    "acc_original_test",
    "acc_cgn_test",
    "acc_both_test",
    "acc_oracle_test",
    "oracle_shape_acc_counterfactual",
    "cgn_vs_oracle",
    "mask_mean",
    "images_per_second",
}


def test_bench_cgn_smoke_writes_every_figure(tmp_path):
    result = run_cgn_benchmark(
        "smoke", item_source="digits", output_dir=str(tmp_path), variants=("colored",), show_progress=False
    )
    figures = result["variants"]["colored"]
    assert FIGURES <= set(figures)
    assert figures["cgn_vs_oracle"] == figures["acc_cgn_test"] / figures["acc_oracle_test"]
    assert all(0.0 <= figures[k] <= 1.0 for k in FIGURES if "acc_" in k)
    assert 0.0 < figures["mask_mean"] < 1.0 and figures["images_per_second"] > 0
    assert (tmp_path / "colored" / "counterfactual_grid.png").is_file()
    assert set(result["targets_met"]) == {"colored"}
    json.dumps(result)


def test_bench_cgn_cli_writes_json_for_the_ensemble(tmp_path, monkeypatch):
    import hf_counterfactual.bench.cgn as bench

    monkeypatch.setitem(bench.SCALES, "quick", bench.SCALES["smoke"])
    out = tmp_path / "cgn.json"
    main(
        [
            "bench",
            "cgn",
            "--quick",
            "--ensemble",
            "--variants",
            "wildlife",
            "--item-source",
            "digits",
            "--output-dir",
            str(tmp_path),
            "--json",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert result["settings"]["ensemble"] is True
    assert FIGURES <= set(result["variants"]["wildlife"])


def test_bench_cgn_rejects_unknown_scale_and_variant():
    with pytest.raises(ValueError, match="scale must be one of"):
        run_cgn_benchmark("huge")
    with pytest.raises(ValueError, match="unknown CGN variants"):
        run_cgn_benchmark("smoke", variants=("plaid",))
