"""`hf-counterfactual quickstart`: every method at small scale -> report.md, results.json, PNG figures."""

import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .bench.cgn import run_cgn_benchmark  # noqa: E402
from .bench.fido import run_fido_benchmark  # noqa: E402
from .bench.pat import run_pat_benchmark  # noqa: E402
from .bench.robust_ft import run_robust_ft_benchmark  # noqa: E402
from .data import CooccurrenceMosaicConfig, build_cooccurrence_mosaics, load_item_source  # noqa: E402


def plot_pat_cfpr(result: dict, path: str) -> None:
    """Bar chart of CFPR(target | companion) per biased pair for plain, PAT-T and PAT-I."""
    per_pair = result["per_seed"][0]["per_pair"]
    pairs = [p["pair"] for p in per_pair["plain"]]
    x = np.arange(len(pairs))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, variant in enumerate(("plain", "pat_t", "pat_i")):
        ax.bar(x + (k - 1) * 0.27, [p["cfpr"] for p in per_pair[variant]], width=0.27, label=variant)
    ax.set_xticks(x, [f"{i}|{j}" for i, j in pairs])
    ax.set_xlabel("pair (target | companion)")
    ax.set_ylabel(f"CFPR at recall {result['recall_target']}")
    ax.set_title("Co-occurrence false positives, before and after PAT")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_mosaics(item_source: str, mosaic: dict, path: str, n: int = 8) -> None:
    """A row of training mosaics with their labels, to show what the models saw."""
    config = CooccurrenceMosaicConfig(**{**mosaic, "num_train": n, "num_validation": 1, "num_test": 1})
    data = build_cooccurrence_mosaics(config, load_item_source(item_source))["train"]
    names = data.features["labels"].feature.names
    fig, axes = plt.subplots(1, n, figsize=(2 * n, 2.6))
    for ax, row in zip(axes, data, strict=True):
        ax.imshow(row["image"])
        ax.set_title("\n".join(names[i] for i in row["labels"]), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pat_section(result: dict) -> str:
    rows = ["| variant | mAP | CFPR | CTPR | cond. AUROC | seconds |", "|---|---|---|---|---|---|"]
    for variant, m in result["variants"].items():
        rows.append(
            f"| {variant} | {m['map']:.3f} | {m['cfpr']:.3f} | {m['ctpr']:.3f} | {m['cond_auroc']:.3f} | {m['seconds']:.0f} |"
        )
    return "\n".join(
        [
            "## PAT: co-occurrence shortcuts (arXiv 2404.06287)",
            "",
            f"Co-occurrence mosaics ({result['mosaic']['num_train']} train canvases, biased pairs "
            f"{result['pairs']} as [target, companion]); thresholds calibrated per class on validation to "
            f"recall {result['recall_target']}; CFPR = false positives of the target among test canvases "
            "holding the companion but not the target.",
            "",
            *rows,
            "",
            f"CFPR reduction: PAT-T {result['cfpr_reduction_pat_t']:.1%}, PAT-I {result['cfpr_reduction_pat_i']:.1%}. "
            f"PAT-I costs {result['pat_i_time_vs_floor']:.2f}x its floor ((1+g^2) batched forwards).",
            "",
            "At quickstart scale (minutes on a CPU) the models are under-trained and one seed is noisy; "
            "`hf-counterfactual bench pat` measures the effect at larger scale (benchmarks/README.md).",
            "",
            "![CFPR per pair](pat_cfpr.png)",
            "",
            "![training mosaics](pat_mosaics.png)",
        ]
    )


def _fido_section(result: dict, figure: str) -> str:
    rows = [
        "| method | deletion AUC (lower better) | insertion AUC | pointing game | mask IoU | Dabkowski-Gal | s / map |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        rows.append(
            f"| {name} | {m['deletion_auc']:.3f} | {m['insertion_auc']:.3f} | {m['pointing_game']:.2f} | "
            f"{m['mask_iou']:.3f} | {m['dabkowski_gal']:.2f} | {m['seconds_per_map']:.3f} |"
        )
    sanity = ", ".join(f"{k} {v['rank_correlation']:.2f}" for k, v in result["sanity_check"].items())
    inpainter = result["inpainter"]["l1_dropped"] if result["inpainter"] else {}
    l1 = ", ".join(f"{k} {v:.4f}" for k, v in inpainter.items())
    return "\n".join(
        [
            "## FIDO: counterfactual saliency (arXiv 1807.08024)",
            "",
            f"A classifier trained on localisation scenes ({result['scenes']['num_train']} canvases of "
            f"{result['scenes']['canvas_size']} px, test accuracy {result['classifier']['test_accuracy']:.2f}) "
            f"explains {result['num_maps']} correctly classified test scenes for their true class; the item "
            "masks are exact, so pointing game and mask IoU measure localisation.",
            "",
            *rows,
            "",
            f"Batched FIDO: {result['speedup_vs_reference']:.1f}x faster per map than the paper's algorithm run "
            f"step for step ({result['reference_maps']} images; deletion AUC {result['ours_deletion_auc']:.3f} "
            f"vs {result['reference_deletion_auc']:.3f}). Model-randomisation sanity check, rank correlation "
            f"between maps of the trained and a randomised model (low = the maps depend on the model): {sanity}.",
            f"Generative inpainter, held-out L1 on dropped pixels: {l1}.",
            "",
            f"![saliency maps]({figure})",
        ]
    )


def _cgn_section(result: dict, figure: str) -> str:
    rows = [
        "| variant | original (train / test) | CGN counterfactuals | both | oracle | CGN / oracle | mask mean | images / s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, m in result["variants"].items():
        rows.append(
            f"| {variant} | {m['acc_original_train']:.3f} / {m['acc_original_test']:.3f} | {m['acc_cgn_test']:.3f} | "
            f"{m['acc_both_test']:.3f} | {m['acc_oracle_test']:.3f} | {m['cgn_vs_oracle']:.2f} | "
            f"{m['mask_mean']:.2f} | {m['images_per_second']:.0f} |"
        )
    s = result["settings"]
    shapes = {
        "generated": "a new shape of the image's class from the shape mechanism",
        "color": "the image's own shape, its mask from per-class colour statistics",
        "encoder": "the image's own shape, its mask from an encoder fitted to the CGN",
    }[s["shapes"]]
    return "\n".join(
        [
            "## CGN: counterfactual generative networks (arXiv 2101.06046)",
            "",
            f"A CGN ({s['cgn_steps']} steps, batch {s['cgn_batch']}) learns shape, texture and background "
            f"mechanisms from {s['num_train']} class-tied training images; {s['per_image']} counterfactuals per "
            f"image ({shapes}; texture and background of random classes from the CGN) train the same "
            "classifier that is also trained on the originals, on both, and on unbiased oracle data. Test "
            "accuracy on images with random colours / textures:",
            "",
            *rows,
            "",
            "At quickstart scale the CGN is far from converged (the paper trains 15 epochs of 60k images); "
            "`hf-counterfactual bench cgn` runs all three variants (benchmarks/README.md).",
            "",
            f"![counterfactual grid]({figure})",
        ]
    )


def plot_id_ood(result: dict, path: str) -> None:
    """Grouped bars of ID and OOD accuracy per robust fine-tuning model."""
    names = list(result["models"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for k, key in enumerate(("id_acc", "ood_acc")):
        ax.bar(
            x + (k - 0.5) * 0.38,
            [result["models"][n][key] for n in names],
            width=0.38,
            label=key[:-4].upper(),
        )
    ax.set_xticks(x, [n.replace("masked_cf_", "masked-CF\n") for n in names], fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Fine-tuning on background-biased data: in- and out-of-distribution accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _robust_ft_section(result: dict, figure: str) -> str:
    rows = ["| model | ID accuracy | OOD accuracy | step cost vs vanilla FT |", "|---|---|---|---|"]
    for name, m in result["models"].items():
        cost = f"{m['step_cost_vs_vanilla']:.2f}x" if "step_cost_vs_vanilla" in m else "-"
        rows.append(f"| {name} | {m['id_acc']:.3f} | {m['ood_acc']:.3f} | {cost} |")
    gains = ", ".join(
        f"{name}: OOD {g['ood_gain_points']:+.1f} points, ID {g['id_delta_points']:+.1f} points"
        for name, g in result["masked_cf_vs_vanilla"].items()
    )
    return "\n".join(
        [
            "## Robust fine-tuning with masked images as counterfactual samples (arXiv 2303.03052)",
            "",
            "A tiny CLIP pre-trained contrastively on captioned items over diverse backgrounds is fine-tuned "
            "on a downstream set where the background gives the class away; ID test images keep that bias, "
            "OOD test images have shuffled or unseen backgrounds (the mean of both is shown).",
            "",
            *rows,
            "",
            f"Masked-CF FT vs vanilla FT: {gains}.",
            "",
            f"![ID / OOD accuracy]({figure})",
        ]
    )


def run_quickstart(
    out: str = "outputs/quickstart",
    item_source: str = "auto",
    pat_scale: str = "quickstart",
    fido_scale: str = "quickstart",
    cgn_scale: str = "quickstart",
    robust_ft_scale: str = "quickstart",
) -> dict:
    """Run every method implemented so far at small scale and write the report to `out`."""
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    pat = run_pat_benchmark(pat_scale, item_source=item_source, output_dir=os.path.join(out, "runs", "pat"))
    plot_pat_cfpr(pat, os.path.join(out, "pat_cfpr.png"))
    plot_mosaics(item_source, pat["mosaic"], os.path.join(out, "pat_mosaics.png"))
    fido = run_fido_benchmark(
        fido_scale, item_source=item_source, output_dir=os.path.join(out, "runs", "fido")
    )
    os.replace(fido["figure"], os.path.join(out, "fido_maps.png"))
    fido["figure"] = os.path.join(out, "fido_maps.png")
    cgn = run_cgn_benchmark(
        cgn_scale, item_source=item_source, output_dir=os.path.join(out, "runs", "cgn"), variants=("colored",)
    )
    os.replace(
        os.path.join(out, "runs", "cgn", "colored", "counterfactual_grid.png"),
        os.path.join(out, "cgn_grid.png"),
    )
    robust = run_robust_ft_benchmark(
        robust_ft_scale, output_dir=os.path.join(out, "runs", "robust_ft"), item_source=item_source
    )
    plot_id_ood(robust, os.path.join(out, "robust_ft_id_ood.png"))
    results = {
        "pat": pat,
        "fido": fido,
        "cgn": cgn,
        "robust_ft": robust,
        "seconds": time.perf_counter() - start,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    report = [
        "# hf-counterfactual quickstart",
        "",
        f"Total time: {results['seconds']:.0f} s.",
        "",
        _pat_section(pat),
        "",
        _fido_section(fido, "fido_maps.png"),
        "",
        _cgn_section(cgn, "cgn_grid.png"),
        "",
        _robust_ft_section(robust, "robust_ft_id_ood.png"),
    ]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(report) + "\n")

    print("\n== quickstart summary ==")
    print(f"{'method':8} {'variant':8} {'mAP':>6} {'CFPR':>6} {'AUROC':>6}")
    for variant, m in pat["variants"].items():
        print(f"{'pat':8} {variant:8} {m['map']:6.3f} {m['cfpr']:6.3f} {m['cond_auroc']:6.3f}")
    best = fido["best_fido_ssr"]
    for name in (best, "occlusion", "gradcam"):
        m = fido["methods"][name]
        print(f"{'fido':8} {name:8} pointing {m['pointing_game']:.2f} deletion AUC {m['deletion_auc']:.3f}")
    print(f"{'fido':8} speedup vs step-for-step reference: {fido['speedup_vs_reference']:.1f}x")
    for variant, m in cgn["variants"].items():
        print(
            f"{'cgn':8} {variant:8} test acc original {m['acc_original_test']:.3f} CGN {m['acc_cgn_test']:.3f} "
            f"oracle {m['acc_oracle_test']:.3f} (CGN / oracle {m['cgn_vs_oracle']:.2f})"
        )
    for name, m in robust["models"].items():
        print(f"{'robustft':8} {name:24} ID {m['id_acc']:.3f} OOD {m['ood_acc']:.3f}")
    print(f"report: {os.path.join(out, 'report.md')}")
    return results
