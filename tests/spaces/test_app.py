"""The Space's tab callbacks called directly on the bundled checkpoints: outputs, caps and bad input."""

import importlib.util
import os

import gradio as gr
import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPACE = os.path.join(ROOT, "spaces")


def load_app():
    """spaces/app.py as a module (spaces/ is a Space folder, not a package)."""
    spec = importlib.util.spec_from_file_location("space_app", os.path.join(SPACE, "app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_app()


@pytest.fixture(scope="module")
def models():
    return app.load_models(os.path.join(SPACE, "checkpoints"))


@pytest.fixture(autouse=True)
def space_threads():
    """The threads the Space runs its callbacks with (`TORCH_THREADS`: tiny models, one image)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(app.TORCH_THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def photo(tmp_path):
    """A 200 x 150 RGB PNG."""
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(path)
    return str(path)


def example(prefix: str) -> str:
    return os.path.join(SPACE, "examples", f"{prefix}_0.png")


def test_missing_checkpoints_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="python spaces/make_checkpoints.py"):
        app.load_models(str(tmp_path))
    with pytest.raises(ValueError, match="unknown model slot"):
        app.load_models(str(tmp_path), overrides={"fidoo": "x"})


def test_bundled_checkpoints_are_small_and_complete(models):
    folder = os.path.join(SPACE, "checkpoints")
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(folder) for f in files)
    assert size < 5e6
    assert not [f for _, _, files in os.walk(folder) for f in files if f.endswith((".bin", ".pt", ".pth"))]
    assert list(models.classifiers)[:2] == list(app.ROBUST_DEFAULTS)
    assert models.pat_plain.labels == models.pat_t.labels


def test_fido_gives_two_overlays_and_probabilities(models):
    ssr, sdr, probs, status = app.explain_fido(models, example("fido"), steps=4)
    for overlay in (ssr, sdr):
        assert isinstance(overlay, PIL.Image.Image)
        assert overlay.size == (app.DISPLAY_SIDE, app.DISPLAY_SIDE)
    assert set(probs) == set(models.fido.labels)
    assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert f"predicted: {max(probs, key=probs.get)}" in status
    assert "4 FIDO steps" in status


def test_fido_explains_a_chosen_class_and_downscales_large_uploads(models, tmp_path):
    path = tmp_path / "large.png"
    PIL.Image.new("RGB", (1200, 900), (40, 80, 120)).save(path)
    target = models.fido.labels[3]
    *_, status = app.explain_fido(models, str(path), target=target, infill="mean", steps=2)
    assert f"Explained **{target}**" in status
    assert "1200 x 900, downscaled to 512 x 384" in status


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": app.MAX_FIDO_STEPS + 1}, "FIDO steps must be"),
        ({"steps": 0}, "FIDO steps must be"),
        ({"steps": 2.5}, "FIDO steps must be"),
        ({"seed": -1}, "seed must be"),
        ({"infill": "generative"}, "infill must be one of"),
        ({"target": "unicorn"}, "unknown class 'unicorn'"),
    ],
)
def test_fido_refuses_settings_out_of_range(models, photo, kwargs, message):
    with pytest.raises(gr.Error, match=message):
        app.explain_fido(models, photo, **kwargs)


def test_bad_uploads_are_clear_errors(tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    truncated = tmp_path / "truncated.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        truncated
    )
    truncated.write_bytes(truncated.read_bytes()[:300])
    for path in (corrupt, text, truncated):
        with pytest.raises(gr.Error, match=f"{path.name} is not an image that can be read"):
            app.load_upload(str(path))
    with pytest.raises(gr.Error, match="Upload an image first"):
        app.load_upload(None)
    with pytest.raises(gr.Error, match="the upload is not an image that can be read"):
        app.load_upload(np.zeros((16, 16, 3)))  # float64 pixels
    huge = tmp_path / "huge.png"
    PIL.Image.new("1", (8000, 6000)).save(huge)  # 48 megapixels, a few KB on disk
    with pytest.raises(gr.Error, match="8000 x 6000 pixels; the limit is 40 megapixels"):
        app.load_upload(str(huge))
    with pytest.raises(gr.Error, match="each side needs at least 8"):
        app.load_upload(PIL.Image.new("RGB", (4, 30)))


def test_uploads_in_every_form_become_rgb(photo):
    gray = PIL.Image.new("L", (40, 30), 128)
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    for upload in (photo, {"path": photo, "orig_name": "photo.png"}, gray, rgba):
        image, note = app.load_upload(upload)
        assert image.mode == "RGB"
        assert "downscaled" not in note


def test_pat_scores_plain_pat_i_and_pat_t(models):
    table, plain, pat_i, pat_t, status = app.predict_pat(models, example("pat"), threshold=0.3)
    labels = models.pat_plain.labels
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["class", "plain", "plain + PAT-I", "PAT-T"]
    assert table["class"].tolist() == labels
    assert table[["plain", "plain + PAT-I", "PAT-T"]].to_numpy().min() >= 0
    assert table[["plain", "plain + PAT-I", "PAT-T"]].to_numpy().max() <= 1
    for scores in (plain, pat_i, pat_t):
        assert set(scores) == set(labels)
    assert "**PAT-T** finds" in status and "score >= 0.3" in status
    with pytest.raises(gr.Error, match="threshold must be in"):
        app.predict_pat(models, example("pat"), threshold=1.5)


def test_cgn_gallery_has_n_images_of_the_chosen_classes(models):
    names = app.class_names(models.cgn)
    images, strip, status = app.sample_cgn(
        models, shape=names[1], texture=2, background=3, num_images=5, seed=7
    )
    assert len(images) == 5
    assert all(isinstance(i, PIL.Image.Image) and i.size == (128, 128) for i in images)
    assert strip.size == (4 * 128, 128)
    assert f"shape of **{names[1]}**, texture of **{names[2]}**, background of **{names[3]}**" in status
    again, _, _ = app.sample_cgn(models, shape=1, texture=2, background=3, num_images=5, seed=7)
    assert np.array_equal(np.asarray(images[0]), np.asarray(again[0]))  # the same seed, the same images


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_images": app.MAX_CGN_IMAGES + 1}, "number of images must be"),
        ({"num_images": 0}, "number of images must be"),
        ({"shape": 99}, "shape class must be"),
        ({"background": "unicorn"}, "background class must be"),
        ({"seed": -3}, "seed must be"),
    ],
)
def test_cgn_refuses_requests_out_of_range(models, kwargs, message):
    with pytest.raises(gr.Error, match=message):
        app.sample_cgn(models, **kwargs)


def test_robust_tab_compares_two_classifiers(models):
    first, second = app.ROBUST_DEFAULTS
    probs_a, probs_b, table, status = app.compare_classifiers(models, example("robust"), first, second)
    for probs in (probs_a, probs_b):
        assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert list(table.columns) == ["class", first, second]
    assert f"**{first}**: {max(probs_a, key=probs_a.get)}" in status
    _, _, table, _ = app.compare_classifiers(models, example("robust"), first, first)
    assert list(table.columns) == ["class", first]
    with pytest.raises(gr.Error, match="unknown classifier 'nope'"):
        app.compare_classifiers(models, example("robust"), first, "nope")


def test_demo_builds_with_a_tab_per_method(models):
    demo = app.build_demo(models)
    assert isinstance(demo, gr.Blocks)
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["FIDO saliency", "PAT multi-label", "CGN counterfactuals", "Robust fine-tuning"]
