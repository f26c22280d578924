"""CGN generator and discriminator (arXiv 2101.06046, sec. 3 and app. A): composition, mask clamp,
texture shuffler, conditioning, determinism, errors, save / load and Auto classes."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from torch import nn
from transformers import AutoConfig, AutoModel

from hf_counterfactual.models.cgn import (
    CGNConfig,
    CGNDiscriminator,
    CGNMaskEncoder,
    CGNMaskEncoderOutput,
    CGNOutput,
    CounterfactualGenerativeNetwork,
    lsgan_generator_loss,
    shuffle_texture,
    tile_and_crop,
    to_unit_range,
)

TINY = dict(num_classes=4, image_size=8, latent_dim=6, ngf=4, embedding_dim=3, disc_hidden=8, disc_channels=4)


def tiny_config(**kwargs) -> CGNConfig:
    return CGNConfig(**{**TINY, **kwargs})


def tiny_cgn(seed: int = 0, **kwargs) -> CounterfactualGenerativeNetwork:
    torch.manual_seed(seed)
    model = CounterfactualGenerativeNetwork(tiny_config(**kwargs))
    with torch.no_grad():  # the authors' 0.1-gain init gives near-constant outputs; spread them for tests
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.5)
    return model


Y = ([0, 1, 2], [3, 2, 1], [1, 1, 0])


# --- outputs and composition ---------------------------------------------------------------------


def test_forward_shapes_ranges_and_tuple_output():
    model = tiny_cgn()
    out = model(*map(torch.tensor, Y), generator=torch.Generator().manual_seed(0))
    assert isinstance(out, CGNOutput)
    assert out.images.shape == out.foreground.shape == out.background.shape == (3, 3, 8, 8)
    assert out.mask.shape == (3, 1, 8, 8)
    for part in (out.images, out.foreground, out.background):
        assert part.abs().max() <= 1.0  # tanh range [-1, 1]
    as_tuple = model(*Y, generator=torch.Generator().manual_seed(0), return_dict=False)
    assert all(torch.equal(a, b) for a, b in zip(as_tuple, out.to_tuple(), strict=True))


def test_composition_is_mask_times_foreground_plus_rest_times_background():
    """x = m * f + (1 - m) * b (the paper's composition C), from the returned parts."""
    out = tiny_cgn()(*Y)
    assert torch.equal(out.images, out.mask * out.foreground + (1 - out.mask) * out.background)


@pytest.mark.parametrize("bias,bound", [(100.0, 0.9999), (-100.0, 1e-4)])
def test_mask_is_clamped_to_config_range(bias, bound):
    model = tiny_cgn()
    with torch.no_grad():
        model.shape.blocks[-1].bias.fill_(bias)  # saturate the sigmoid
    mask = model(*Y).mask
    expected = torch.tensor(bound, dtype=mask.dtype)
    assert torch.equal(mask.max() if bias > 0 else mask.min(), expected)
    assert mask.min() >= torch.tensor(1e-4) and mask.max() <= torch.tensor(0.9999)


def test_to_unit_range_maps_tanh_range_to_unit_interval():
    torch.testing.assert_close(to_unit_range(torch.tensor([-1.0, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))


# --- texture shuffler ----------------------------------------------------------------------------


def test_tile_and_crop_offset_zero_is_identity_and_offsets_are_circular_shifts():
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(tile_and_crop(x, torch.zeros(2, 2, dtype=torch.long)), x)
    assert torch.equal(tile_and_crop(x, torch.tensor([[4, 4], [4, 0]])), x)  # a full tile further on
    # tiled 2x2, the crop at (top, left) is the image rolled by (-top, -left)
    crop = tile_and_crop(x, torch.tensor([[1, 3], [2, 0]]))
    assert torch.equal(crop[0], x[0].roll((-1, -3), dims=(1, 2)))
    assert torch.equal(crop[1], x[1].roll((-2, 0), dims=(1, 2)))


def test_shuffle_keeps_each_images_pixel_values_and_is_deterministic():
    x = torch.randn(5, 3, 8, 8)
    shuffled = shuffle_texture(x, torch.Generator().manual_seed(1))
    assert torch.equal(shuffled, shuffle_texture(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(shuffled, shuffle_texture(x, torch.Generator().manual_seed(2)))
    for a, b in zip(shuffled, x, strict=True):  # same multiset of pixels per image (so also a subset)
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)


def test_model_textures_are_shuffled_versions_of_unshuffled_ones():
    shuffled, plain = tiny_cgn(), tiny_cgn(shuffle_texture=False)
    plain.load_state_dict(shuffled.state_dict())
    u = torch.randn(3, 6)
    a = shuffled(*Y, noise=u, generator=torch.Generator().manual_seed(0))
    b = plain(*Y, noise=u)
    assert not torch.equal(a.foreground, b.foreground) and torch.equal(a.mask, b.mask)
    for part in ("foreground", "background"):
        for s, p in zip(a[part], b[part], strict=True):
            assert torch.isin(s, p).all()  # every shuffled value comes from the same unshuffled texture
            assert torch.equal(s.flatten().sort().values, p.flatten().sort().values)


# --- noise, conditioning, generate ---------------------------------------------------------------


def test_reorient_flips_the_mask_and_swaps_the_texture_mechanisms_of_inverted_classes():
    """Class 1 inside out: its shape mask becomes 1 - m, a texture of class 1 comes from the background
    mechanism and a background of class 1 from the foreground mechanism; other classes are untouched."""
    model = tiny_cgn(shuffle_texture=False).eval()
    shape, texture, background = ([0, 1, 2], [1, 2, 1], [1, 1, 0])
    u = tuple(torch.randn(3, 6) for _ in range(3))
    plain = model(shape, texture, background, noise=u)
    model.config.inverted_classes = [1]
    assert torch.equal(model(shape, texture, background, noise=u).images, plain.images)  # training: as is
    out = model(shape, texture, background, noise=u, reorient=True)

    mask = plain.mask.clone()
    mask[1] = 1 - plain.mask[1]
    foreground = plain.foreground.clone()
    foreground[[0, 2]] = torch.tanh(model.background(u[1], torch.tensor(texture)))[[0, 2]]
    back = plain.background.clone()
    back[[0, 1]] = torch.tanh(model.foreground(u[2], torch.tensor(background)))[[0, 1]]
    torch.testing.assert_close(out.mask, mask)
    torch.testing.assert_close(out.foreground, foreground)
    torch.testing.assert_close(out.background, back)
    torch.testing.assert_close(out.images, mask * foreground + (1 - mask) * back)
    untouched = model([0, 2, 0], [2, 0, 0], [0, 0, 2], noise=u, reorient=True)  # no row of class 1
    plain_untouched = model([0, 2, 0], [2, 0, 0], [0, 0, 2], noise=u)
    torch.testing.assert_close(untouched.images, plain_untouched.images)
    with pytest.raises(ValueError, match=r"reorient=True samples in eval mode: call \.eval\(\) first"):
        model.train()(shape, texture, background, noise=u, reorient=True)
    model.eval()
    generated = model.generate(shape, texture, background, seed=2)  # generate re-orients
    model.config.inverted_classes = None
    assert not torch.equal(generated.images, model.generate(shape, texture, background, seed=2).images)


class BorderOrCentreMask(nn.Module):
    """A stand-in shape mechanism: class 1 masks the 2-pixel border (inside out), class 2 the top three
    rows (a wide item inside out: 20 of the 48 frame pixels, a quarter of the centre), class 3 a band of
    full-width rows 2-5 (a wide item the right way round: a third of the frame, all of the centre), class 4
    all but the top row (most of the frame: inside out, though it covers the centre too), class 0 the centre."""

    def forward(self, noise, labels):
        logits = torch.full((5, 8, 8), -6.0)
        logits[0, 2:-2, 2:-2] = 6.0
        logits[1] = -logits[0]
        logits[2, :3] = 6.0
        logits[3, 2:6] = 6.0
        logits[4, 1:] = 6.0
        return logits[labels][:, None]


def test_orient_classes_finds_inside_out_classes_and_generate_turns_them_right_side_out(tmp_path):
    model = tiny_cgn(num_classes=5)
    model.shape = BorderOrCentreMask()
    assert model.orient_classes(num_samples=3) == [1, 2, 4] and model.config.inverted_classes == [1, 2, 4]
    mask = model.generate([0, 1], [0, 1], [0, 1], seed=0).mask[:, 0]
    assert (mask[:, 2:-2, 2:-2] > 0.99).all() and (mask[:, :2] < 0.01).all()  # both centred now
    # found on the raw masks, not the re-oriented ones
    assert model.orient_classes(num_samples=3) == [1, 2, 4]

    model.save_pretrained(tmp_path)
    assert CGNConfig.from_pretrained(tmp_path).inverted_classes == [1, 2, 4]
    with pytest.raises(ValueError, match=r"border width must be in \[1, 4\), got 5"):
        model.orient_classes(border_width=5)


def test_noise_none_draws_one_shared_u_from_the_generator():
    model = tiny_cgn(shuffle_texture=False)
    out = model(*Y, generator=torch.Generator().manual_seed(3))
    u = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.images, model(*Y, noise=u).images)
    assert torch.equal(out.images, model(*Y, noise=(u, u, u)).images)
    # generate(shared_noise=True) is the same single draw, from its seed, in eval mode
    shared = model.generate(*Y, seed=3, shared_noise=True)
    assert torch.equal(shared.images, model.eval()(*Y, noise=u).images)
    assert not torch.equal(shared.images, model.generate(*Y, seed=3).images)  # independent u per mechanism


def test_generate_is_deterministic_per_seed_and_leaves_training_mode():
    model = tiny_cgn().train()
    a, b = model.generate(*Y, seed=0), model.generate(*Y, seed=0)
    assert model.training and not a.images.requires_grad
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, model.generate(*Y, seed=1).images)


def test_each_label_conditions_only_its_own_mechanism():
    model = tiny_cgn()
    base = model.generate([0, 1], [2, 3], [1, 0], seed=5)
    new_shape = model.generate([2, 3], [2, 3], [1, 0], seed=5)
    assert not torch.equal(new_shape.mask, base.mask)
    assert torch.equal(new_shape.foreground, base.foreground) and torch.equal(
        new_shape.background, base.background
    )
    new_texture = model.generate([0, 1], [0, 0], [1, 0], seed=5)
    assert not torch.equal(new_texture.foreground, base.foreground)
    assert torch.equal(new_texture.mask, base.mask) and torch.equal(new_texture.background, base.background)
    new_background = model.generate([0, 1], [2, 3], [3, 3], seed=5)
    assert not torch.equal(new_background.background, base.background)
    assert torch.equal(new_background.mask, base.mask) and torch.equal(
        new_background.foreground, base.foreground
    )


def test_generator_loss_reaches_all_three_mechanisms():
    model, disc = tiny_cgn(), CGNDiscriminator(tiny_config())
    out = model(*Y)
    lsgan_generator_loss(disc(out.images, torch.tensor(Y[0]))).backward()
    for name in ("shape", "foreground", "background"):
        grad = getattr(model, name).linear.weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "labels,message",
    [
        (([0, 4], [0, 0], [0, 0]), r"shape_labels has class ids outside \[0, 4\)"),
        (([0, 0], [-1, 0], [0, 0]), r"texture_labels has class ids outside \[0, 4\)"),
        (([], [], []), "shape_labels is empty: need n > 0"),
        (([0, 1], [0], [0, 1]), "label lengths differ"),
        (([0.5], [0], [0]), "1-D sequence of integer class ids"),
    ],
)
def test_bad_labels_raise(labels, message):
    model = tiny_cgn()
    with pytest.raises(ValueError, match=message):
        model.generate(*labels)
    with pytest.raises(ValueError, match=message):
        model(*labels)


def test_bad_noise_raises():
    with pytest.raises(ValueError, match=r"noise must be one \(3, 6\) tensor"):
        tiny_cgn()(*Y, noise=torch.randn(3, 5))


# --- discriminator -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disc_type,conditioning", [("mlp", "projection"), ("mlp", "concat"), ("conv", "projection")]
)
def test_discriminator_scores_are_per_image_and_class_conditioned(disc_type, conditioning):
    torch.manual_seed(0)
    disc = CGNDiscriminator(tiny_config(disc_type=disc_type, disc_conditioning=conditioning)).eval()
    x = torch.randn(3, 3, 8, 8)
    scores = disc(x, torch.tensor([0, 1, 2]))
    assert scores.shape == (3,)
    assert not torch.equal(scores, disc(x, torch.tensor([3, 3, 3])))
    with pytest.raises(ValueError, match=r"pixel_values must be \(batch, 3, 8, 8\)"):
        disc(torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="got 3 images but 2 labels"):
        disc(x, torch.tensor([0, 1]))


@pytest.mark.parametrize("disc_type", ["mlp", "conv"])
def test_discriminator_keeps_pytorch_default_init_while_generator_gets_orthogonal_gain_0_1(disc_type):
    """D: PyTorch's kaiming-uniform default (|w| <= 1 / sqrt(fan_in), non-zero biases), as the authors' DiscLin;
    G: orthogonal with gain 0.1 (W^T W = 0.01 I for a layer with more outputs than inputs) and zero biases."""
    torch.manual_seed(0)
    config = tiny_config(disc_type=disc_type, disc_spectral_norm=False)
    disc, gen = CGNDiscriminator(config), CounterfactualGenerativeNetwork(config)
    first = next(m for m in disc.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d))
    fan_in = first.weight[0].numel()
    assert first.weight.abs().max() <= fan_in**-0.5
    assert first.weight.std() > 0.5 * fan_in**-0.5 / 3**0.5  # uniform(-b, b) has std b / sqrt(3)
    linear = disc.model[0] if disc_type == "mlp" else disc.head
    assert linear.bias.abs().sum() > 0
    w = gen.shape.linear.weight  # (out, in) with out > in: orthonormal columns times 0.1
    assert torch.allclose(w.T @ w, 0.01 * torch.eye(w.shape[1]), atol=1e-5)
    assert gen.shape.linear.bias.abs().sum() == 0


def test_spectral_norm_bounds_each_mlp_layer_to_unit_largest_singular_value():
    """With disc_spectral_norm each linear's effective weight is W / sigma(W), sigma by power iteration:
    after a few training forwards the layer uses raw / sigma(raw), whose largest singular value is 1."""
    torch.manual_seed(0)
    disc = CGNDiscriminator(tiny_config()).train()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for _ in range(30):  # each training forward runs one power-iteration step
        disc(x, y)
    disc.eval()
    linears = [m for m in (*disc.model, disc.head) if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4
    for layer in linears:
        assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=1e-3)
        raw = layer.parametrizations.weight.original  # the trained parameter; D uses it divided by sigma
        torch.testing.assert_close(
            layer.weight, raw / torch.linalg.matrix_norm(raw, ord=2), atol=1e-3, rtol=0
        )
    plain = CGNDiscriminator(tiny_config(disc_spectral_norm=False))
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_conv_discriminator_scores_the_flattened_last_map_with_spectral_norm_or_batch_norm():
    """Three 4x4 stride-2 convs (16 -> 8 -> 4 -> 2 px here; channels c, 2c, 4c); phi(x) is the flattened map,
    so the projection embedding has 4c * (s / 8)^2 entries. With spectral norm each conv and the head are
    normalised and there is no BatchNorm; without it, BatchNorm after the second and third conv."""
    config = tiny_config(disc_type="conv", image_size=16)
    disc = CGNDiscriminator(config).eval()  # eval: no power-iteration step between the two forwards
    convs = [m for m in disc.model if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, (4, 4), (2, 2)),
        (8, (4, 4), (2, 2)),
        (16, (4, 4), (2, 2)),
    ]
    assert all(hasattr(m, "parametrizations") for m in (*convs, disc.head))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())
    assert disc.label_embedding.weight.shape == (4, 16 * 2 * 2)
    x = torch.randn(3, 3, 16, 16)
    features = disc.model(x)
    assert features.shape == (3, 64)
    labels = torch.tensor([0, 1, 3])
    expected = disc.head(features)[:, 0] + (disc.label_embedding(labels) * features).sum(-1)
    torch.testing.assert_close(disc(x, labels), expected)
    plain = CGNDiscriminator(tiny_config(disc_type="conv", disc_spectral_norm=False))
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 2
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_spectral_norm_discriminator_round_trip(tmp_path):
    torch.manual_seed(0)
    disc = CGNDiscriminator(tiny_config()).train()
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    disc(x, y)  # move the power-iteration vectors off their initial values
    disc.eval().save_pretrained(tmp_path / "disc")
    loaded = CGNDiscriminator.from_pretrained(tmp_path / "disc").eval()
    assert loaded.config.disc_spectral_norm
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in disc.state_dict().items())
    torch.testing.assert_close(loaded(x, y), disc(x, y))


def test_mlp_projection_score_is_head_plus_label_embedding_dot_features():
    """D(x, y) = w . phi(x) + b + embed(y) . phi(x), phi = the MLP's last hidden layer (Miyato & Koyama 2018)."""
    torch.manual_seed(0)
    disc = CGNDiscriminator(tiny_config()).eval()
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 3])
    phi = disc.model(x.flatten(1))
    expected = phi @ disc.head.weight[0] + disc.head.bias + (disc.label_embedding.weight[y] * phi).sum(-1)
    assert torch.allclose(disc(x, y), expected, atol=1e-6)


# --- config, save / load, Auto classes -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image_size": 30}, "image_size must be a positive multiple of 4, got 30"),
        ({"disc_type": "foo"}, "disc_type must be 'mlp' or 'conv', got 'foo'"),
        ({"mask_clamp": (0.5, 0.1)}, "mask_clamp must be"),
        ({"disc_dropout": 1.0}, r"disc_dropout must be in \[0, 1\)"),
        ({"disc_conditioning": "film"}, "disc_conditioning must be 'projection' or 'concat', got 'film'"),
        ({"disc_type": "conv", "disc_conditioning": "concat"}, "conv discriminator supports only"),
        ({"disc_type": "conv", "image_size": 4}, "conv discriminator needs image_size >= 8, got 4"),
        (
            {"num_classes": 4, "inverted_classes": [4]},
            r"inverted_classes must be distinct class ids in \[0, 4\)",
        ),
        ({"inverted_classes": [1, 1]}, "inverted_classes must be distinct class ids"),
    ],
)
def test_config_validation_errors(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        CGNConfig(**kwargs)


def test_save_pretrained_round_trip_and_auto_classes(tmp_path):
    model = tiny_cgn(mask_clamp=(0.01, 0.99))
    expected = model.generate(*Y, seed=7)
    model.save_pretrained(tmp_path / "cgn")
    assert (tmp_path / "cgn" / "model.safetensors").is_file() and not list(tmp_path.glob("cgn/*.bin"))

    config = AutoConfig.from_pretrained(tmp_path / "cgn")
    assert isinstance(config, CGNConfig) and list(config.mask_clamp) == [0.01, 0.99]
    for loader in (CounterfactualGenerativeNetwork, AutoModel):
        loaded = loader.from_pretrained(tmp_path / "cgn")
        assert isinstance(loaded, CounterfactualGenerativeNetwork)
        state = loaded.state_dict()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), loader.__name__
        out = loaded.generate(*Y, seed=7)
        assert all(torch.equal(out[k], expected[k]) for k in expected), loader.__name__

    disc = CGNDiscriminator(tiny_config(disc_type="conv")).eval()
    disc.save_pretrained(tmp_path / "disc")
    x = torch.randn(2, 3, 8, 8)
    loaded_disc = CGNDiscriminator.from_pretrained(tmp_path / "disc").eval()
    assert all(torch.equal(v, loaded_disc.state_dict()[k]) for k, v in disc.state_dict().items())
    # same weights; conv kernels may differ in the last float bit across tensor layouts
    torch.testing.assert_close(loaded_disc(x, [0, 1]), disc(x, [0, 1]), rtol=1e-5, atol=1e-8)


def test_auto_model_from_config_builds_the_generator():
    assert isinstance(AutoModel.from_config(tiny_config()), CounterfactualGenerativeNetwork)


# --- the mask encoder (not in the paper) and generate(masks=...) -------------------------------------


def test_mask_encoder_predicts_clamped_masks_and_its_loss_is_binary_cross_entropy():
    torch.manual_seed(0)
    encoder = CGNMaskEncoder(tiny_config(encoder_channels=5))
    pixels, target = torch.rand(3, 3, 8, 8) * 2 - 1, torch.rand(3, 1, 8, 8)
    out = encoder(pixels, target_masks=target)
    assert isinstance(out, CGNMaskEncoderOutput) and out.mask.shape == (3, 1, 8, 8)
    assert out.mask.min() >= 1e-4 and out.mask.max() <= 0.9999
    p = torch.sigmoid(encoder.model(pixels))  # the hand computation: -mean(t log p + (1 - t) log(1 - p))
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    torch.testing.assert_close(out.loss, expected)
    assert encoder(pixels).loss is None


def test_mask_encoder_errors_and_round_trip(tmp_path):
    encoder = CGNMaskEncoder(tiny_config())
    with pytest.raises(
        ValueError, match=r"pixel_values must be \(batch, 3, 8, 8\) in \[-1, 1\], got \(2, 3, 16, 16\)"
    ):
        encoder(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"target_masks must be \(2, 1, 8, 8\)"):
        encoder(torch.zeros(2, 3, 8, 8), target_masks=torch.zeros(2, 8, 8))
    encoder.save_pretrained(tmp_path)
    again = CGNMaskEncoder.from_pretrained(tmp_path)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(again(x).mask, encoder(x).mask)
    with pytest.raises(StrictDataclassClassValidationError, match="encoder_channels must be >= 1"):
        tiny_config(encoder_channels=0)
    with pytest.raises(StrictDataclassClassValidationError, match="encoder_dilations must be a non-empty"):
        tiny_config(encoder_dilations=[1, 0])


def test_mask_encoder_has_one_dilated_conv_per_entry_and_sees_that_far():
    torch.manual_seed(0)
    encoder = CGNMaskEncoder(tiny_config(encoder_dilations=[1, 2]))  # receptive field 1 + 2 * (1 + 2) = 7 px
    convs = [m for m in encoder.model if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 2, 1] and convs[-1].kernel_size == (1, 1)
    x = torch.zeros(1, 3, 8, 8, requires_grad=True)
    encoder(x).mask[0, 0, 0, 0].backward()  # which pixels reach the top-left output
    reached = x.grad.abs().sum(1)[0] > 0
    assert reached[:4, :4].all() and not reached[4:].any() and not reached[:, 4:].any()


def test_generate_with_masks_composes_them_with_the_same_textures_and_backgrounds():
    model = tiny_cgn()
    plain = model.generate(*Y, seed=3)
    masks = torch.rand(3, 1, 8, 8)
    given = model.generate(*Y, seed=3, masks=masks)
    torch.testing.assert_close(given.foreground, plain.foreground)
    torch.testing.assert_close(given.background, plain.background)
    torch.testing.assert_close(given.mask, masks.clamp(1e-4, 0.9999))
    torch.testing.assert_close(
        given.images, given.mask * plain.foreground + (1 - given.mask) * plain.background
    )
    with pytest.raises(
        ValueError, match=r"masks must be \(3, 1, 8, 8\) \(one per label\), got \(2, 1, 8, 8\)"
    ):
        model.generate(*Y, masks=torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"masks must lie in \[0, 1\]"):
        model.generate(*Y, masks=torch.rand(3, 1, 8, 8) + 1)
