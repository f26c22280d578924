"""CGN counterfactual data (arXiv 2101.06046, sec. 3.3): per-image counterfactuals keep the shape class and
draw texture and background classes anew; determinism, save / load, errors, the class and mechanism grids;
counterfactuals of real images through a mask encoder or given masks (not in the paper)."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_counterfactual.models.cgn import (
    CGNConfig,
    CGNMaskEncoder,
    CounterfactualGenerativeNetwork,
    batch_seed,
    generate_counterfactual_dataset,
    save_counterfactual_grid,
    save_image_grid,
    save_mechanism_grid,
    to_uint8,
)


def tiny_cgn(**kwargs) -> CounterfactualGenerativeNetwork:
    torch.manual_seed(0)
    config = CGNConfig(**{"num_classes": 4, "image_size": 8, "latent_dim": 8, "ngf": 4, **kwargs})
    model = CounterfactualGenerativeNetwork(config)
    with torch.no_grad():  # spread the near-constant 0.1-gain init so images differ
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_cgn()


LABELS = [0, 3, 1, 2, 3]


def test_columns_sizes_and_features(model):
    data = generate_counterfactual_dataset(model, LABELS, per_image=3, seed=1, batch_size=4)
    assert len(data) == len(LABELS) * 3
    assert data["shape"] == np.repeat(LABELS, 3).tolist()
    assert data["label"] == data["shape"]
    assert data.features["label"].names == ["0", "1", "2", "3"]
    assert isinstance(data.features["image"], datasets.Image)
    image = data[0]["image"]
    assert image.mode == "RGB" and image.size == (8, 8)
    assert all(0 <= t < 4 for t in list(data["texture"]) + list(data["background"]))


def test_rows_are_what_generate_was_asked_for(model):
    data = generate_counterfactual_dataset(model, LABELS, per_image=2, seed=5, batch_size=4)
    # batch 1 = rows 4..7: regenerate it with its seed and classes and compare pixels
    rows = data.select(range(4, 8))
    out = model.generate(rows["shape"], rows["texture"], rows["background"], seed=batch_seed(5, 1))
    expected = to_uint8(out.images)
    got = np.stack([np.asarray(image) for image in rows["image"]])
    np.testing.assert_array_equal(got, expected)


def test_random_draws_are_uniform_and_seeded(model):
    data = generate_counterfactual_dataset(model, 50, per_image=4, seed=0)
    assert data["shape"] == np.repeat(np.arange(50) % 4, 4).tolist()
    rng = np.random.default_rng(0)
    texture, background = rng.integers(0, 4, size=(2, 200))
    assert data["texture"] == texture.tolist() and data["background"] == background.tolist()
    assert set(data["texture"]) == set(range(4))


def test_permuted_mode_keeps_label_frequencies(model):
    labels = [0, 0, 0, 1, 2]
    data = generate_counterfactual_dataset(model, labels, per_image=3, mode="permuted")
    for column in ("texture", "background"):
        rounds = np.asarray(data[column]).reshape(len(labels), 3).T  # one permutation per round
        for draw in rounds:
            assert sorted(draw.tolist()) == sorted(labels)


def test_deterministic_per_seed(model):
    a = generate_counterfactual_dataset(model, LABELS, per_image=2, seed=3)
    b = generate_counterfactual_dataset(model, LABELS, per_image=2, seed=3)
    c = generate_counterfactual_dataset(model, LABELS, per_image=2, seed=4)
    assert a["texture"] == b["texture"] and a["background"] == b["background"]
    pixels = [np.stack([np.asarray(x) for x in d["image"]]) for d in (a, b, c)]
    np.testing.assert_array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])


def test_save_to_disk_round_trip(model, tmp_path):
    data = generate_counterfactual_dataset(model, LABELS, per_image=2)
    data.save_to_disk(str(tmp_path / "cf"))
    loaded = datasets.load_from_disk(str(tmp_path / "cf"))
    assert loaded.features == data.features
    for column in ("label", "shape", "texture", "background"):
        assert loaded[column] == data[column]
    np.testing.assert_array_equal(np.asarray(loaded[3]["image"]), np.asarray(data[3]["image"]))


def test_label_names_from_id2label():
    names = ["zero", "one", "two", "three"]
    model = tiny_cgn(id2label=dict(enumerate(names)))
    data = generate_counterfactual_dataset(model, [2], per_image=1)
    assert data.features["label"].names == names
    assert data.features["label"].int2str(data[0]["label"]) == "two"


def test_pooled_generators_take_turns_row_by_row(model):
    other = tiny_cgn(ngf=6)  # another CGN of the same classes and image size
    single = generate_counterfactual_dataset(model, LABELS, per_image=3, seed=2, batch_size=4)
    pooled = generate_counterfactual_dataset([model, other], LABELS, per_image=3, seed=2, batch_size=4)
    assert pooled["generator"] == [r % 2 for r in range(15)]
    for column in ("shape", "texture", "background"):  # the class draws do not depend on the pool
        assert pooled[column] == single[column]
    # model 1 draws rows 1, 3, ..., 13; its batch 1 = its rows 4..7 = dataset rows 9, 11, 13
    rows = pooled.select([9, 11, 13])
    out = other.generate(rows["shape"], rows["texture"], rows["background"], seed=batch_seed(2, 1, 1))
    got = np.stack([np.asarray(image) for image in rows["image"]])
    np.testing.assert_array_equal(got, to_uint8(out.images))
    # model 0's rows are its own batches, not the single-model dataset's (other rows, other batches)
    rows = pooled.select([0, 2, 4, 6])
    out = model.generate(rows["shape"], rows["texture"], rows["background"], seed=batch_seed(2, 0))
    np.testing.assert_array_equal(np.stack([np.asarray(x) for x in rows["image"]]), to_uint8(out.images))
    assert "generator" not in single.column_names and batch_seed(2, 1, 0) == batch_seed(2, 1)


def test_pool_rejects_mismatched_or_no_generators(model):
    with pytest.raises(ValueError, match="num_classes: model 0 has 4, model 1 has 5"):
        generate_counterfactual_dataset([model, tiny_cgn(num_classes=5)], LABELS)
    with pytest.raises(ValueError, match="image_size"):
        generate_counterfactual_dataset([model, tiny_cgn(image_size=12)], LABELS)
    with pytest.raises(ValueError, match="non-empty sequence"):
        generate_counterfactual_dataset([], LABELS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": [0, 1], "per_image": 0}, "per_image"),
        ({"labels": 0}, "num_images"),
        ({"labels": [0, 4]}, r"\[0, 4\)"),
        ({"labels": [-1]}, r"\[0, 4\)"),
        ({"labels": []}, "non-empty"),
        ({"labels": [0], "batch_size": 0}, "batch_size"),
        ({"labels": [0], "mode": "shuffled"}, "mode"),
    ],
)
def test_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_counterfactual_dataset(model, **kwargs)


def test_class_grid_png_size(model, tmp_path):
    path = save_counterfactual_grid(
        model, tmp_path / "grid.png", shape_classes=[0, 2], column_classes=[1, 2, 3]
    )
    with Image.open(path) as image:
        assert image.size == (40 + 100 * 3, 30 + 100 * 2)
    with Image.open(save_counterfactual_grid(model, tmp_path / "all.png")) as image:
        assert image.size == (40 + 100 * 4, 30 + 100 * 4)
    with pytest.raises(ValueError, match="class ids"):
        save_counterfactual_grid(model, tmp_path / "bad.png", shape_classes=[4])


def test_image_grid_tiles_samples(model, tmp_path):
    out = model.generate([1] * 5, [2] * 5, [3] * 5, seed=0)
    with Image.open(save_image_grid(out.images, tmp_path / "s.png")) as image:
        assert image.size == (3 * 10 + 2, 2 * 10 + 2)  # 3 columns x 2 rows of 8 px + 2 px padding
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels[2:10, 2:10], to_uint8(out.images)[0])


def test_mechanism_grid_shows_the_composed_parts(model, tmp_path):
    """Per class, `samples` groups of image | mask | foreground | background from one generate call: the
    image cell is the composition m f + (1 - m) b of the three cells beside it."""
    path = save_mechanism_grid(model, tmp_path / "m.png", classes=[2, 0], samples=2, seed=3)
    with Image.open(path) as image:
        assert image.size == (8 * 10 + 2, 2 * 10 + 2)  # 2 samples x 4 cells of 8 px, 2 rows
        pixels = np.asarray(image).astype(float) / 255
    out = model.generate([2, 2, 0, 0], [2, 2, 0, 0], [2, 2, 0, 0], seed=3)
    cell = lambda row, col: pixels[2 + row * 10 : 10 + row * 10, 2 + col * 10 : 10 + col * 10]  # noqa: E731
    np.testing.assert_allclose(cell(1, 5)[..., 0], out.mask[3, 0].numpy(), atol=1 / 255)  # class 0, sample 2
    image, mask, fg, bg = (cell(0, c) for c in range(4))  # class 2, sample 1
    np.testing.assert_allclose(image, mask * fg + (1 - mask) * bg, atol=3 / 255)
    with pytest.raises(ValueError, match="class ids"):
        save_mechanism_grid(model, tmp_path / "bad.png", classes=[4])
    with pytest.raises(ValueError, match="samples"):
        save_mechanism_grid(model, tmp_path / "bad.png", samples=0)


@pytest.mark.parametrize("cut", [True, False])
def test_real_images_keep_their_own_mask_in_each_of_their_counterfactuals(model, cut):
    torch.manual_seed(1)
    encoder = CGNMaskEncoder(model.config)
    real = torch.rand(len(LABELS), 3, 8, 8) * 2 - 1
    with torch.no_grad():  # an untrained encoder's masks sit near one value: cut them at their median
        threshold = encoder(real).mask.median().item() if cut else None
    data = generate_counterfactual_dataset(
        model,
        LABELS,
        per_image=2,
        seed=5,
        batch_size=4,
        pixel_values=real,
        mask_encoders=[encoder],
        mask_threshold=threshold,
    )
    assert data["shape"] == np.repeat(LABELS, 2).tolist()
    # batch 1 = rows 4..7 = counterfactuals of real images 2, 2, 3, 3: their masks (cut at the threshold,
    # or soft), the batch's textures
    rows = data.select(range(4, 8))
    with torch.no_grad():
        masks = encoder(real[[2, 2, 3, 3]]).mask
    if threshold is not None:
        masks = (masks > threshold).float()
        assert 0.2 < masks.mean() < 0.8  # both sides of the cut occur
    out = model.generate(
        rows["shape"], rows["texture"], rows["background"], seed=batch_seed(5, 1), masks=masks
    )
    got = np.stack([np.asarray(image) for image in rows["image"]])
    np.testing.assert_array_equal(got, to_uint8(out.images))


def test_real_image_errors(model):
    encoder, real = CGNMaskEncoder(model.config), torch.zeros(len(LABELS), 3, 8, 8)
    with pytest.raises(ValueError, match="pixel_values and mask_encoders go together"):
        generate_counterfactual_dataset(model, LABELS, pixel_values=real)
    with pytest.raises(ValueError, match="one mask encoder per CGN: got 2 for 1"):
        generate_counterfactual_dataset(model, LABELS, pixel_values=real, mask_encoders=[encoder, encoder])
    with pytest.raises(ValueError, match=r"mask_threshold must be in \(0, 1\) or None"):
        generate_counterfactual_dataset(
            model, LABELS, pixel_values=real, mask_encoders=encoder, mask_threshold=1.0
        )
    with pytest.raises(ValueError, match="got 4 images for 5 labels"):
        generate_counterfactual_dataset(model, LABELS, pixel_values=real[:4], mask_encoders=encoder)
    # images of another size than the CGN draws: the encoder names the size it needs
    with pytest.raises(
        ValueError, match=r"pixel_values must be \(batch, 3, 8, 8\) in \[-1, 1\], got \(50, 3, 9, 8\)"
    ):
        generate_counterfactual_dataset(
            model, LABELS, pixel_values=torch.zeros(5, 3, 9, 8), mask_encoders=encoder
        )


def test_given_masks_replace_the_shape_mechanism_and_are_cut_like_the_encoders():
    model = tiny_cgn()
    torch.manual_seed(2)
    masks = torch.rand(len(LABELS), 1, 8, 8)
    data = generate_counterfactual_dataset(model, LABELS, per_image=2, seed=5, batch_size=4, masks=masks)
    rows = data.select(range(4, 8))  # batch 1: counterfactuals of real images 2, 2, 3, 3
    cut = (masks[[2, 2, 3, 3]] > 0.5).float()
    out = model.generate(rows["shape"], rows["texture"], rows["background"], seed=batch_seed(5, 1), masks=cut)
    got = np.stack([np.asarray(image) for image in rows["image"]])
    np.testing.assert_array_equal(got, to_uint8(out.images))
    soft = generate_counterfactual_dataset(model, LABELS, per_image=2, seed=5, batch_size=4, masks=masks,
                                           mask_threshold=None)  # fmt: skip
    out = model.generate(rows["shape"], rows["texture"], rows["background"], seed=batch_seed(5, 1),
                         masks=masks[[2, 2, 3, 3]])  # fmt: skip
    got = np.stack([np.asarray(image) for image in soft.select(range(4, 8))["image"]])
    np.testing.assert_array_equal(got, to_uint8(out.images))


def test_given_mask_errors(model):
    masks = torch.zeros(len(LABELS), 1, 8, 8)
    encoder = CGNMaskEncoder(model.config)
    with pytest.raises(ValueError, match="masks or mask_encoders, not both"):
        generate_counterfactual_dataset(
            model, LABELS, masks=masks, pixel_values=torch.zeros(5, 3, 8, 8), mask_encoders=encoder
        )
    with pytest.raises(
        ValueError, match=r"masks must be \(N, 1, 8, 8\) for 5 labels .* got shape \(4, 1, 8, 8\)"
    ):
        generate_counterfactual_dataset(model, LABELS, masks=masks[:4])
    with pytest.raises(ValueError, match=r"mask_threshold must be in \(0, 1\) or None"):
        generate_counterfactual_dataset(model, LABELS, masks=masks, mask_threshold=0.0)
