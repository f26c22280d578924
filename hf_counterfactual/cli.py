"""`hf-counterfactual`: one entry point with sub-commands (quickstart, train, evaluate, explain, generate, bench, card, push).

Every sub-command runs unchanged under `accelerate launch -m hf_counterfactual.cli ...`.
"""

import argparse
import json
import logging
import os


def _write_json(data: dict, path: str | None) -> None:
    text = json.dumps(data, indent=2)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")
        print(f"wrote {path}")
    else:
        print(text)


def cmd_train(args: argparse.Namespace) -> None:
    from .training.recipes import run_recipe

    results = run_recipe(args.recipe, args.overrides)
    print(json.dumps({k: v for k, v in results.items() if k != "pairs"}, indent=2, default=str))


def cmd_evaluate(args: argparse.Namespace) -> None:
    import datasets
    from transformers import AutoModelForImageClassification

    from .data import MultiLabelCollator, mosaic_config_of
    from .models.pat import PatchingInference
    from .training.pat_trainer import evaluate_multilabel

    data = datasets.load_from_disk(args.dataset)
    model = AutoModelForImageClassification.from_pretrained(args.model)
    pairs = json.loads(args.pairs) if args.pairs else mosaic_config_of(data["test"]).biased_pairs
    image_size = args.image_size or data["test"][0]["image"].size[0]
    collator = MultiLabelCollator(model.config.num_labels, image_size)
    results = {"model": evaluate_multilabel(model, data, collator, pairs, args.recall)}
    if args.pat_i:
        results["pat_i"] = evaluate_multilabel(
            PatchingInference(model, args.grid_size), data, collator, pairs, args.recall
        )
    _write_json(results, args.json)


def cmd_bench(args: argparse.Namespace) -> None:
    scale = args.scale or ("quick" if args.quick else "full")
    output_dir = args.output_dir or f"outputs/bench/{args.method}"
    if args.method == "pat":
        from .bench.pat import run_pat_benchmark

        zoom = {} if args.zoom_crop is None else {"zoom_crop": args.zoom_crop}
        result = run_pat_benchmark(
            scale, seeds=args.seeds, item_source=args.item_source, output_dir=output_dir, **zoom
        )
    elif args.method == "fido":
        from .bench.fido import run_fido_benchmark

        seed = args.seeds[0] if args.seeds else 0
        result = run_fido_benchmark(scale, seed=seed, item_source=args.item_source, output_dir=output_dir)
    elif args.method == "robust-ft":
        from .bench.robust_ft import run_robust_ft_benchmark

        result = run_robust_ft_benchmark(
            scale,
            seeds=args.seeds,
            output_dir=output_dir,
            item_source=args.item_source,
            models=args.models,
            resume=args.resume,
        )
    else:
        from .bench.cgn import run_cgn_benchmark

        seed = args.seeds[0] if args.seeds else 0
        result = run_cgn_benchmark(
            scale,
            seed=seed,
            item_source=args.item_source,
            output_dir=output_dir,
            variants=tuple(args.variants),
            ensemble=args.ensemble,
            torch_compile=args.torch_compile,
            generators=args.generators,
            resume=args.resume,
            shapes=args.shapes,
        )
    _write_json(result, args.json)


def cmd_explain(args: argparse.Namespace) -> None:
    from .explain.run import explain_image_files

    summary = explain_image_files(
        args.model,
        args.image,
        args.out,
        objective=args.objective,
        infill=args.infill,
        target=args.target,
        inpainter=args.inpainter,
        steps=args.steps,
        seed=args.seed,
    )
    for record in summary["images"]:
        print(f"{record['image']}: {record['target_label']} -> {record['overlay']}")
    print(f"wrote {os.path.join(args.out, 'saliency.json')}")


def _split_of(path: str, split: str):
    """One split of a dataset saved with `save_to_disk` (a `Dataset` is its own only split)."""
    import datasets

    data = datasets.load_from_disk(path)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"{path} has no split {split!r}; it has {', '.join(data)}.")
        return data[split]
    return data


def _mask_encoder_of(cgn_folder: str):
    """The `CGNMaskEncoder` a CGN run fitted into `cgn_folder`/mask_encoder."""
    from .models.cgn import CGNMaskEncoder

    folder = os.path.join(cgn_folder, "mask_encoder")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(
            f"--images needs a mask encoder in {folder}: train the CGN with mask_encoder_steps > 0 "
            "(e.g. `hf-counterfactual train RECIPE mask_encoder_steps=500`) or save one from fit_mask_encoder."
        )
    return CGNMaskEncoder.from_pretrained(folder)


def cmd_generate(args: argparse.Namespace) -> None:
    from .models.cgn import (
        CounterfactualGenerativeNetwork,
        color_item_masks,
        generate_counterfactual_dataset,
        save_counterfactual_grid,
        save_image_grid,
        save_mechanism_grid,
    )
    from .training.cgn_trainer import CgnCollator

    if args.num_images <= 0:
        raise ValueError(f"-n/--num-images must be > 0, got {args.num_images}.")
    for flag, value in (("--pool-with", args.pool_with), ("--images", args.images)):
        if value and not args.dataset_out:
            raise ValueError(f"{flag} is an option of the counterfactual dataset: it needs --dataset-out.")
    model = CounterfactualGenerativeNetwork.from_pretrained(args.model)
    k = model.config.num_classes
    texture = args.shape if args.texture is None else args.texture
    background = args.shape if args.background is None else args.background
    for flag, value in (("--shape", args.shape), ("--texture", texture), ("--background", background)):
        if not 0 <= value < k:
            raise ValueError(f"{flag} must be a class id in [0, {k}), got {value}.")
    folders = [args.model, *(args.pool_with or [])]
    labels, real = args.labels_from, {}
    if args.images:  # counterfactuals of these images, keeping their shapes (read before anything is written)
        batch = CgnCollator(model.config.image_size)(list(_split_of(args.images, args.split)))
        labels = batch["labels"].tolist()
        real = {"mask_threshold": args.mask_threshold or None}
        if args.masks == "color":
            real["masks"] = color_item_masks(batch["pixel_values"], batch["labels"], k)
        else:
            real["pixel_values"] = batch["pixel_values"]
            real["mask_encoders"] = [_mask_encoder_of(d) for d in folders]
    if args.grid:
        save_counterfactual_grid(model, args.out, seed=args.seed)
    elif args.mechanisms:
        save_mechanism_grid(model, args.out, seed=args.seed)
    else:
        n = args.num_images
        out = model.generate([args.shape] * n, [texture] * n, [background] * n, seed=args.seed)
        save_image_grid(out.images, args.out)
    print(f"wrote {args.out}")
    if args.dataset_out:
        pool = [model] + [CounterfactualGenerativeNetwork.from_pretrained(d) for d in folders[1:]]
        data = generate_counterfactual_dataset(
            pool, labels, per_image=args.per_image, seed=args.seed, mode=args.mode, **real
        )
        data.save_to_disk(args.dataset_out)
        print(f"wrote {args.dataset_out} ({len(data)} counterfactuals)")


def _write_card(
    folder: str,
    method: str | None = None,
    metrics_file: str | None = None,
    dataset: str | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
) -> None:
    """Write folder/README.md from the metrics.json and recipe.yaml a training run leaves there."""
    import yaml

    from .hub import infer_method, write_model_card

    path = metrics_file or os.path.join(folder, "metrics.json")
    metrics = {}
    if metrics_file or os.path.isfile(path):
        with open(path) as f:
            metrics = json.load(f)
    recipe = os.path.join(folder, "recipe.yaml")
    training_config = None
    if os.path.isfile(recipe):
        with open(recipe) as f:
            training_config = yaml.safe_load(f)
    method = method or infer_method(folder)
    write_model_card(
        folder,
        method,
        metrics,
        dataset=dataset,
        base_model=base_model,
        training_config=training_config,
        repo_id=repo_id,
    )
    print(f"wrote {os.path.join(folder, 'README.md')} ({method} card)")


def cmd_card(args: argparse.Namespace) -> None:
    _write_card(args.model, args.method, args.metrics, args.dataset, args.base_model, args.repo_id)


def cmd_push(args: argparse.Namespace) -> None:
    from .hub import push_to_hub

    if not os.path.isfile(os.path.join(args.model, "README.md")):
        _write_card(args.model, repo_id=args.repo_id)
    url = push_to_hub(
        args.model, args.repo_id, private=args.private, token=args.token, revision=args.revision
    )
    print(f"pushed {args.model} to {url}")


def cmd_quickstart(args: argparse.Namespace) -> None:
    from .report import run_quickstart

    run_quickstart(args.out, item_source=args.item_source)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-counterfactual", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "quickstart", help="Run every method at small scale; write report.md, figures, results.json."
    )
    p.add_argument("--out", default="outputs/quickstart")
    p.add_argument("--item-source", default="auto", choices=["auto", "fashion_mnist", "digits"])
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("train", help="Run a recipe: hf-counterfactual train RECIPE.yaml key=value ...")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key=value (nested: mosaic.strength=0.8)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="Multi-label metrics (mAP, CFPR, conditional AUROC) of a trained model."
    )
    p.add_argument("--model", required=True, help="Folder or Hub id of a multi-label image classifier.")
    p.add_argument("--dataset", required=True, help="save_to_disk folder with validation and test splits.")
    p.add_argument("--pairs", help="JSON [[i, j], ...] for CFPR(i|j); default: the mosaic's biased pairs.")
    p.add_argument("--pat-i", action="store_true", help="Also evaluate with patching-based inference.")
    p.add_argument("--grid-size", type=int, default=2)
    p.add_argument("--image-size", type=int)
    p.add_argument("--recall", type=float, default=0.9)
    p.add_argument("--json", help="Write results here instead of stdout.")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("explain", help="FIDO saliency overlays + saliency.json for image files.")
    p.add_argument("--model", required=True, help="Folder or Hub id of an image classifier.")
    p.add_argument("--image", nargs="+", required=True, help="Image files to explain.")
    p.add_argument("--objective", default="ssr", choices=["ssr", "sdr"])
    p.add_argument("--infill", default="blur", help="mean, blur, noise, local or generative.")
    p.add_argument("--inpainter", help="Saved InpaintingPipeline folder for --infill generative.")
    p.add_argument("--target", type=int, help="Class index to explain (default: each image's prediction).")
    p.add_argument("--steps", type=int, help="Optimisation steps (default: the paper's 300).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/explain")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("bench", help="Benchmarks as JSON: bench {pat,fido,cgn,robust-ft} --quick --json FILE")
    p.add_argument("method", choices=["pat", "fido", "cgn", "robust-ft"], help="Method to benchmark.")
    p.add_argument("--quick", action="store_true", help="Small scale (minutes on 2 CPU cores).")
    p.add_argument(
        "--scale",
        help="A named scale of the benchmark (overrides --quick): smoke, quickstart, quick, full; cgn also long; "
        "robust-ft also tiny_full and medium.",
    )
    p.add_argument("--seeds", type=int, nargs="+", help="Override the scale's seeds.")
    p.add_argument("--item-source", default="auto", choices=["auto", "fashion_mnist", "digits"])
    p.add_argument("--output-dir", help="Where models and figures go (default: outputs/bench/METHOD).")
    p.add_argument("--json", help="Write results here instead of stdout.")
    p.add_argument(
        "--zoom-crop",
        type=float,
        help="pat: zoom-crop probability for every variant (default 0.25; 0 = off).",
    )
    p.add_argument(
        "--ensemble", action="store_true", help="cgn: train the three-head invariant ensemble classifiers."
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=["colored", "double_colored", "wildlife"],
        help="cgn: which benchmark variants to run.",
    )
    p.add_argument(
        "--torch-compile",
        action="store_true",
        help="cgn: compile the GAN step (CUDA graphs on a GPU, where the step is bound by kernel launches).",
    )
    p.add_argument(
        "--generators",
        type=int,
        help="cgn: CGNs trained per variant (seeds S, S+1, ...) whose counterfactuals are pooled "
        "(default: the scale's; 2 at the long and full scales, else 1).",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="cgn, robust-ft: go on from an earlier run into --output-dir. cgn: keep its finished variants and "
        "CGNs, resume a CGN cut off mid-training from its last checkpoint (saved at every evaluation). robust-ft: "
        "keep its pre-trained CLIPs and finished models (their figures and step times as measured then).",
    )
    p.add_argument(
        "--models",
        nargs="+",
        help="robust-ft: run only these of the scale's models (zero_shot, linear_probe, vanilla_ft, ft_distill, "
        "masked_cf_<strategy>_<refill>; WiSE-FT comes with vanilla_ft), e.g. to split the full scale over "
        "processes into one --output-dir, then merge with --resume.",
    )
    p.add_argument(
        "--shapes",
        choices=["generated", "encoder", "color"],
        default="color",
        help="cgn: where the counterfactuals' shapes come from. generated: the CGN's shape mechanism (the "
        "paper's protocol). color (default) and encoder: counterfactuals of the real training images, which keep "
        "their shapes (not in the paper), their masks from per-class colour statistics of the images' centre "
        "against their frame, or from a mask encoder fitted to each CGN's own compositions.",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "generate",
        help="CGN samples of chosen classes as a PNG grid, a class or mechanism grid, or a dataset.",
    )
    p.add_argument("--model", required=True, help="Folder of a saved CounterfactualGenerativeNetwork.")
    p.add_argument("--shape", type=int, default=0, help="Shape (mask) class.")
    p.add_argument("--texture", type=int, help="Foreground texture class (default: --shape).")
    p.add_argument("--background", type=int, help="Background class (default: --shape).")
    p.add_argument("-n", "--num-images", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    figure = p.add_mutually_exclusive_group()
    figure.add_argument(
        "--grid", action="store_true", help="Write the shape x texture/background class grid."
    )
    figure.add_argument(
        "--mechanisms",
        action="store_true",
        help="Write each class's image, mask, foreground and background side by side (2 samples per class).",
    )
    p.add_argument("--out", default="outputs/generate/cgn.png", help="PNG to write.")
    p.add_argument("--dataset-out", help="Also write a counterfactual dataset here (save_to_disk).")
    p.add_argument(
        "--labels-from", type=int, default=100, help="Real images (labels cycle 0..K-1), without --images."
    )
    p.add_argument(
        "--images",
        metavar="DIR",
        help="A dataset (save_to_disk; `image` and `label` columns) whose images get counterfactuals that keep "
        "their shapes (not in the paper), their masks as --masks says.",
    )
    p.add_argument(
        "--masks",
        choices=["color", "encoder"],
        default="color",
        help="--images: find the images' masks from per-class colour statistics of their centre against their "
        "frame (color: for data whose colours are tied to the class, as the CGN's training data), or with each "
        "CGN folder's mask_encoder/ (encoder).",
    )
    p.add_argument("--split", default="train", help="The split of --images, if it has several.")
    p.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="--images: cut the masks at this value (0 keeps them soft; soft masks copy the images' "
        "own patterns into their counterfactuals).",
    )
    p.add_argument("--per-image", type=int, default=10, help="Counterfactuals per real image.")
    p.add_argument("--mode", default="random", choices=["random", "permuted"])
    p.add_argument(
        "--pool-with",
        nargs="+",
        metavar="DIR",
        help="More CGN folders (e.g. other seeds) whose counterfactuals --dataset-out pools with --model's.",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("card", help="Write README.md (model card) for a saved model from its metrics.json.")
    p.add_argument("--model", required=True, help="A folder written by save_pretrained.")
    p.add_argument(
        "--method",
        choices=["pat", "classifier", "cgn", "inpainter", "robust_ft"],
        help="Card template (default: from config.json / model_index.json).",
    )
    p.add_argument("--metrics", help="Metrics JSON (default: MODEL/metrics.json when present).")
    p.add_argument("--dataset", help="Hub id or name of the training / evaluation dataset.")
    p.add_argument("--base-model", help="Hub id of the model it was fine-tuned from.")
    p.add_argument("--repo-id", help="ORG/NAME the card's usage snippet loads from.")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser(
        "push", help="Push a saved model with its remote code to the Hub (writes README.md if missing)."
    )
    p.add_argument("--model", required=True, help="A folder written by save_pretrained.")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if missing).")
    p.add_argument("--private", action="store_true", help="Create the repository as private.")
    p.add_argument("--token", help="Hub token (default: the one `hf auth login` stored).")
    p.add_argument("--revision", help="Branch to push to (created if missing; default: main).")
    p.set_defaults(func=cmd_push)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
