"""The PAT benchmark at its smoke scale: every figure the issue asks for is present and sane."""

import json

from hf_counterfactual.bench.pat import pat_i_time_vs_floor, run_pat_benchmark
from hf_counterfactual.cli import main


def test_bench_pat_smoke_writes_every_figure(tmp_path, monkeypatch):
    result = run_pat_benchmark("smoke", item_source="digits", output_dir=str(tmp_path), show_progress=False)
    for variant in ("plain", "pat_t", "pat_i"):
        assert set(result["variants"][variant]) == {"map", "cfpr", "ctpr", "cond_auroc", "seconds"}
        assert result["variants"][variant]["seconds"] > 0
    plain, pat_t = result["variants"]["plain"]["cfpr"], result["variants"]["pat_t"]["cfpr"]
    assert result["cfpr_reduction_pat_t"] == 1 - pat_t / plain
    assert result["pat_i_time_vs_floor"] > 0
    assert set(result["targets_met"]) == {"pat_t", "pat_i"}
    assert result["zoom_crop"] == {"probability": 0.25, "scale": [0.5, 1.0]}  # every variant trains with it
    json.dumps(result)  # JSON-serialisable as written by the CLI


def test_pat_i_time_vs_floor_is_a_ratio_near_one_for_a_linear_model():
    import torch

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 8 * 8, 4)

        def forward(self, pixel_values):
            return self.fc(pixel_values.flatten(1))

    ratio = pat_i_time_vs_floor(Linear(), torch.randn(4, 3, 8, 8), grid_size=2, repeats=3)
    assert 0.05 < ratio < 50


def test_bench_cli_rejects_unknown_method(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["bench", "robust-ft-unknown", "--quick"])
    assert "invalid choice" in capsys.readouterr().err


def test_bench_cli_passes_zoom_crop_to_the_pat_benchmark(monkeypatch, tmp_path):
    import hf_counterfactual.bench.pat as bench_pat

    seen = {}
    monkeypatch.setattr(bench_pat, "run_pat_benchmark", lambda *args, **kwargs: seen.update(kwargs) or {})
    main(["bench", "pat", "--quick", "--zoom-crop", "0", "--json", str(tmp_path / "pat.json")])
    assert seen["zoom_crop"] == 0.0  # 0 turns it off
    seen.clear()
    main(["bench", "pat", "--quick", "--json", str(tmp_path / "pat.json")])
    assert "zoom_crop" not in seen  # the benchmark's default (ZOOM_CROP) applies
