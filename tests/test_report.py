"""quickstart writes report.md, results.json and the figures, with numbers in every method's section."""

import json

from hf_counterfactual.cli import main


def test_quickstart_writes_report_results_and_figures(tmp_path, monkeypatch, capsys):
    import hf_counterfactual.report as report

    real = report.run_quickstart
    monkeypatch.setattr(
        report,
        "run_quickstart",
        lambda out, item_source: real(
            out,
            item_source,
            pat_scale="smoke",
            fido_scale="smoke",
            cgn_scale="smoke",
            robust_ft_scale="smoke",
        ),
    )
    main(["quickstart", "--out", str(tmp_path), "--item-source", "digits"])

    text = (tmp_path / "report.md").read_text()
    assert "## PAT" in text and "| plain |" in text and "| pat_t |" in text and "| pat_i |" in text
    assert "CFPR reduction: PAT-T" in text
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["pat"]["variants"]) == {"plain", "pat_t", "pat_i"}
    assert "## FIDO" in text and "| fido-ssr-generative |" in text and "| gradcam |" in text
    assert "faster per map than the paper's algorithm" in text and "![saliency maps](fido_maps.png)" in text
    assert results["fido"]["speedup_vs_reference"] > 0
    assert "## CGN" in text and "| colored |" in text and "![counterfactual grid](cgn_grid.png)" in text
    assert "(the image's own shape, its mask from per-class colour statistics;" in text  # bench cgn's default
    assert 0 <= results["cgn"]["variants"]["colored"]["acc_cgn_test"] <= 1
    assert (
        "## Robust fine-tuning" in text
        and "| masked_cf_object_single |" in text
        and "Masked-CF FT vs vanilla FT" in text
    )
    assert set(results["robust_ft"]["models"]) >= {
        "zero_shot",
        "vanilla_ft",
        "wise_ft",
        "masked_cf_object_single",
    }
    for png in ("pat_cfpr.png", "pat_mosaics.png", "fido_maps.png", "cgn_grid.png", "robust_ft_id_ood.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "quickstart summary" in capsys.readouterr().out
