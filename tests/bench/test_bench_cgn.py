"""The CGN benchmark at its smoke scale: every figure the issue asks for is present, sane and consistent."""

import json
import os

import pytest
import torch

from hf_counterfactual.bench.cgn import SCALES, cgn_configs, run_cgn_benchmark
from hf_counterfactual.cli import main
from hf_counterfactual.training.cgn_trainer import CgnStep

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
    assert (tmp_path / "colored" / "mechanism_grid.png").is_file()
    assert set(result["targets_met"]) == {"colored"}
    # the smoke scale evaluates every 2 of its 4 steps and keeps the generator that transfers best
    transfer = figures["cgn_transfer_accuracy"]
    assert set(transfer) == {"2", "4"} and figures["cgn_selected_step"] in (2, 4)
    assert transfer[str(figures["cgn_selected_step"])] == max(transfer.values())
    assert isinstance(figures["cgn_inverted_classes"], list)
    assert all(0 <= c < 10 for c in figures["cgn_inverted_classes"])
    assert figures["binary_items"] is False  # colored keeps the items' intensity
    assert figures["generators"] == result["settings"]["generators"] == 1  # the full scale pools 2
    assert SCALES["full"]["generators"] == 2
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


def test_bench_cgn_pools_the_counterfactuals_of_several_generators(tmp_path):
    result = run_cgn_benchmark(
        "smoke", item_source="digits", output_dir=str(tmp_path), variants=("colored",), show_progress=False,
        generators=2,
    )  # fmt: skip
    figures = result["variants"]["colored"]
    assert result["settings"]["generators"] == figures["generators"] == 2
    assert FIGURES <= set(figures) and 0.0 < figures["mask_mean"] < 1.0
    assert len(figures["cgn_selected_step"]) == len(figures["cgn_inverted_classes"]) == 2
    assert figures["counterfactual_images"] == 64 * SCALES["smoke"]["per_image"]  # the pool's, not 2x
    assert (tmp_path / "colored" / "cgn" / "config.json").is_file()
    assert (tmp_path / "colored" / "cgn_1" / "config.json").is_file()
    with pytest.raises(ValueError, match="generators must be >= 1"):
        run_cgn_benchmark("smoke", item_source="digits", output_dir=str(tmp_path), generators=0)


def test_torch_compile_compiles_the_gan_step_and_drops_the_partial_batch(tmp_path):
    _, train_cfg = cgn_configs("colored", SCALES["quick"], 0, str(tmp_path), torch_compile=True)
    assert train_cfg.torch_compile and train_cfg.dataloader_drop_last
    assert train_cfg.torch_compile_mode == ("reduce-overhead" if torch.cuda.is_available() else None)
    _, eager = cgn_configs("colored", SCALES["quick"], 0, str(tmp_path))
    assert not eager.torch_compile and not eager.dataloader_drop_last
    assert eager.eval_steps is None  # --quick: no checkpoint selection (its time budget)
    _, full = cgn_configs("colored", SCALES["full"], 0, str(tmp_path))
    assert (full.eval_steps, full.metric_for_best_model, full.load_best_model_at_end) == (
        5625, "transfer_accuracy", True)  # fmt: skip


def test_cgn_configs_take_the_discriminator_from_the_scale(tmp_path):
    cgn_cfg, _ = cgn_configs("colored", SCALES["quick"], 0, str(tmp_path))
    assert cgn_cfg.disc_type == "mlp"
    cgn_cfg, _ = cgn_configs("colored", {**SCALES["quick"], "disc_type": "conv"}, 0, str(tmp_path))
    assert cgn_cfg.disc_type == "conv"


def test_bench_cgn_rejects_unknown_scale_and_variant():
    with pytest.raises(ValueError, match="scale must be one of"):
        run_cgn_benchmark("huge")
    with pytest.raises(ValueError, match="unknown CGN variants"):
        run_cgn_benchmark("smoke", variants=("plaid",))


def test_score_generator_trains_only_the_named_classifiers(tmp_path):
    from hf_counterfactual.bench.cgn import SCALES, score_generator
    from hf_counterfactual.data import load_item_source
    from hf_counterfactual.data.cgn_variants import CgnVariantConfig, build_cgn_variant
    from hf_counterfactual.models.cgn import CGNConfig, CounterfactualGenerativeNetwork

    sc = SCALES["smoke"]
    items = load_item_source("digits")
    sizes = {"num_train": 40, "num_validation": 0, "num_test": 20, "seed": 0}
    biased = build_cgn_variant(CgnVariantConfig(variant="colored", **sizes), items)
    oracle = build_cgn_variant(CgnVariantConfig(variant="colored", bias=False, **sizes), items)
    generator = CounterfactualGenerativeNetwork(CGNConfig(ngf=8)).eval()  # untrained: the code path only

    scores = score_generator(generator, biased, oracle, sc, str(tmp_path), show_progress=False,
                             which=("cgn", "oracle"))  # fmt: skip

    assert {"acc_cgn_test", "acc_oracle_test", "oracle_shape_acc_counterfactual", "cgn_vs_oracle"} <= set(
        scores
    )
    assert "acc_both_test" not in scores and "both_vs_oracle" not in scores
    assert scores["cgn_vs_oracle"] == scores["acc_cgn_test"] / scores["acc_oracle_test"]
    assert scores["counterfactual_images"] == 40 * sc["per_image"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier_cgn", "classifier_oracle"]


@pytest.mark.parametrize("binarize,expect_binary", [(None, True), (False, False), (True, True)])
def test_benchmark_splits_compose_with_the_binary_mask_unless_the_scale_says_otherwise(
    binarize, expect_binary
):
    """double_colored by default (the authors' data) and with sc["binarize"]: each image is its two jittered
    colours only; with binarize False the item's intensity blends them. The oracle twin shares the items."""
    import numpy as np

    from hf_counterfactual.bench.cgn import benchmark_splits
    from hf_counterfactual.data import load_item_source

    sc = {"num_train": 6, "num_test": 4, **({} if binarize is None else {"binarize": binarize})}
    biased, oracle = benchmark_splits("double_colored", sc, 0, load_item_source("digits"))
    assert biased["train"]["item"] == oracle["train"]["item"]
    for image in biased["train"]["image"]:
        colours = np.unique(np.asarray(image).reshape(-1, 3), axis=0)
        assert (len(colours) == 2) == expect_binary, len(colours)


def test_bench_cgn_resume_keeps_what_an_earlier_run_finished(tmp_path, monkeypatch):
    import hf_counterfactual.bench.cgn as bench

    kwargs = dict(item_source="digits", output_dir=str(tmp_path), variants=("colored",), show_progress=False)
    first = run_cgn_benchmark("smoke", **kwargs)["variants"]["colored"]
    cgn = tmp_path / "colored" / "cgn"
    saved = json.loads((tmp_path / "colored" / "results.json").read_text())
    assert saved["figures"] == first and saved["run"]["scale"] == "smoke"
    assert saved["run"]["shapes"] == "color" and saved["run"]["mask_threshold"] == 0.5
    assert sorted(os.listdir(cgn / "checkpoints")) == ["checkpoint_0", "checkpoint_1"]  # at each evaluation
    # a fresh run into the same folder is refused before it trains, not at its first checkpoint
    with pytest.raises(ValueError, match="checkpoints of an earlier run: go on from them with resume=True"):
        run_cgn_benchmark("smoke", **kwargs)

    def fail(*args, **kw):
        raise AssertionError("resume redid finished work")

    # a finished variant: its figures as they were, nothing trained or scored again
    with monkeypatch.context() as m:
        m.setattr(bench, "run_cgn", fail)
        m.setattr(bench, "score_generator", fail)
        assert run_cgn_benchmark("smoke", resume=True, **kwargs)["variants"]["colored"] == first
        # figures of other settings are not passed off as this run's
        with pytest.raises(ValueError, match="was measured with .*'seed': 0.*, not .*'seed': 1"):
            run_cgn_benchmark("smoke", seed=1, resume=True, **kwargs)

    # a trained CGN is loaded, not retrained; the classifiers run again. Not a CGN of another seed: the folder
    # records what its CGNs were trained with
    (tmp_path / "colored" / "results.json").unlink()
    with monkeypatch.context() as m:
        m.setattr(bench, "run_cgn", fail)
        with pytest.raises(ValueError, match="colored was measured with .*'seed': 0.*, not .*'seed': 1"):
            run_cgn_benchmark("smoke", seed=1, resume=True, **kwargs)
        again = run_cgn_benchmark("smoke", resume=True, **kwargs)["variants"]["colored"]
    assert again["cgn_train_seconds"] == first["cgn_train_seconds"]
    assert again["cgn_transfer_accuracy"] == first["cgn_transfer_accuracy"]

    # a CGN cut off after its last checkpoint (step 4 of 4) goes on from it: no step trained again, and
    # the evaluations and the best generator are the checkpoint's
    (tmp_path / "colored" / "results.json").unlink()
    (cgn / "metrics.json").unlink()
    with monkeypatch.context() as m:
        m.setattr(CgnStep, "__call__", fail)
        resumed = run_cgn_benchmark("smoke", resume=True, **kwargs)["variants"]["colored"]
    assert resumed["cgn_transfer_accuracy"] == first["cgn_transfer_accuracy"]
    assert resumed["cgn_selected_step"] == first["cgn_selected_step"]

    # trained CGNs in a folder that does not say what they were trained with are not resumed
    (tmp_path / "colored" / "bench_run.json").unlink()
    (tmp_path / "colored" / "results.json").unlink()
    with pytest.raises(ValueError, match="has no bench_run.json to tell what it was measured with"):
        run_cgn_benchmark("smoke", resume=True, **kwargs)


def test_classifiers_may_score_a_share_of_the_images_the_cgn_trains_on(tmp_path, monkeypatch):
    import hf_counterfactual.bench.cgn as bench

    monkeypatch.setitem(bench.SCALES, "smoke", {**SCALES["smoke"], "classifier_num_train": 24})
    result = run_cgn_benchmark(
        "smoke", item_source="digits", output_dir=str(tmp_path), variants=("colored",), show_progress=False
    )
    assert result["settings"]["classifier_num_train"] == 24
    assert result["variants"]["colored"]["counterfactual_images"] == 24 * SCALES["smoke"]["per_image"]
    metrics = json.loads((tmp_path / "colored" / "cgn" / "metrics.json").read_text())
    assert metrics["train_images"] == SCALES["smoke"]["num_train"] == 64
    assert SCALES["long"]["classifier_num_train"] < SCALES["long"]["num_train"]


def spy_on_generation(monkeypatch) -> dict:
    """The keyword arguments the bench passes to `generate_counterfactual_dataset` (its last call)."""
    import hf_counterfactual.bench.cgn as bench

    seen = {}
    generate = bench.generate_counterfactual_dataset

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(bench, "generate_counterfactual_dataset", spy)
    return seen


@pytest.mark.parametrize("shapes", ["color", "generated"])
def test_bench_cgn_shapes_color_uses_the_colour_masks_of_the_real_images_and_generated_none(
    tmp_path, monkeypatch, shapes
):
    import hf_counterfactual.bench.cgn as bench
    from hf_counterfactual.models.cgn import color_item_masks
    from hf_counterfactual.training.cgn_trainer import CgnCollator

    seen = spy_on_generation(monkeypatch)
    monkeypatch.setitem(bench.SCALES, "quick", bench.SCALES["smoke"])
    out = tmp_path / "cgn.json"
    cli = ["bench", "cgn", "--quick", "--shapes", shapes, "--variants", "colored", "--item-source", "digits"]
    main([*cli, "--output-dir", str(tmp_path), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["settings"]["shapes"] == shapes and result["settings"]["mask_encoder_steps"] is None
    assert seen["mask_encoders"] is None and seen["pixel_values"] is None
    assert not (tmp_path / "colored" / "cgn" / "mask_encoder").exists()
    assert FIGURES <= set(result["variants"]["colored"])
    if shapes == "generated":
        assert seen["masks"] is None and result["settings"]["mask_threshold"] is None
        return
    assert result["settings"]["mask_threshold"] == seen["mask_threshold"] == 0.5
    # the masks of the very training images, from their labels
    biased, _ = bench.benchmark_splits("colored", bench.SCALES["smoke"], 0, bench.load_item_source("digits"))
    real = CgnCollator(32)(list(biased["train"]))["pixel_values"]
    expect = color_item_masks(real, torch.tensor(biased["train"]["label"]), 10)
    assert seen["masks"].shape == (64, 1, 32, 32)
    torch.testing.assert_close(seen["masks"], expect)


def test_bench_cgn_shapes_encoder_fits_a_mask_encoder_per_cgn_and_resume_keeps_it(tmp_path, monkeypatch):
    import hf_counterfactual.bench.cgn as bench

    seen = spy_on_generation(monkeypatch)
    monkeypatch.setitem(bench.SCALES, "quick", bench.SCALES["smoke"])
    out = tmp_path / "cgn.json"
    cli = [
        "bench",
        "cgn",
        "--quick",
        "--shapes",
        "encoder",
        "--variants",
        "colored",
        "--item-source",
        "digits",
    ]
    main([*cli, "--output-dir", str(tmp_path), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["settings"]["shapes"] == "encoder" and result["settings"]["mask_encoder_steps"] == 2
    assert result["settings"]["mask_threshold"] == seen["mask_threshold"] == 0.5
    assert (tmp_path / "colored" / "cgn" / "mask_encoder" / "model.safetensors").is_file()
    # the counterfactuals are of the real training images, through the fitted encoder
    assert seen["pixel_values"].shape == (64, 3, 32, 32) and len(seen["mask_encoders"]) == 1
    assert seen["pixel_values"].min() >= -1 and seen["pixel_values"].max() <= 1
    assert seen["masks"] is None
    assert FIGURES <= set(result["variants"]["colored"])

    def fail(*args, **kw):
        raise AssertionError("resume fitted the mask encoder again")

    (tmp_path / "colored" / "results.json").unlink()
    monkeypatch.setattr(bench, "fit_mask_encoder", fail)
    kwargs = dict(item_source="digits", output_dir=str(tmp_path), variants=("colored",), show_progress=False)
    run_cgn_benchmark("quick", shapes="encoder", resume=True, **kwargs)
    # counterfactuals with other masks, or the paper's, are another run's figures: not passed off as these
    with pytest.raises(ValueError, match="'shapes': 'encoder'.*, not .*'shapes': 'color'"):
        run_cgn_benchmark("quick", resume=True, **kwargs)
    with pytest.raises(ValueError, match="shapes must be one of generated, encoder, color, got 'real'"):
        run_cgn_benchmark("quick", shapes="real", **kwargs)
