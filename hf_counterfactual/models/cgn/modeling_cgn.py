"""MNIST-scale Counterfactual Generative Network (Sauer & Geiger, ICLR 2021, arXiv 2101.06046).

Three independent conditional generators, each with its own class label, noise input and label
embedding, compose an image (the paper's analytic composition C(m, f, b)):

    x = m * f + (1 - m) * b

with m the shape mask (1 channel, sigmoid, clamped to `config.mask_clamp`), f the foreground texture and
b the background (both tanh, so in [-1, 1], and "shuffled": tiled 2x2 and randomly cropped back to
`image_size`, so they cannot carry shape). Images are therefore in [-1, 1]; `to_unit_range` maps them to
[0, 1]. The conditional discriminator [`CGNDiscriminator`] scores (image, shape class) pairs for the
LSGAN loss (see `losses.py`).

Noise: the authors' training pass feeds one u ~ N(0, I) to all three mechanisms, and their
counterfactual sampling draws fresh u per mechanism. `forward` takes either one (B, latent_dim) tensor
(shared) or a tuple of three; with `noise=None` it draws one shared u (training). `generate` draws
independent u per mechanism by default (counterfactuals), `shared_noise=True` shares it.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_cgn import CGNConfig
from .losses import frame_and_centre, mask_border_loss

MECHANISMS = ("shape", "foreground", "background")


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map CGN outputs from [-1, 1] (tanh range) to [0, 1]: (x + 1) / 2."""
    return (images + 1) / 2


def tile_and_crop(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Tile (B, C, H, W) images 2x2 into (B, C, 2H, 2W) and cut an H x W crop per image.

    `offsets` is (B, 2) integer (top, left) in [0, H] x [0, W]. Offset (0, 0) returns the input; in
    general the crop is a circular shift of the image, so it keeps each image's pixel values.
    """
    b, _, h, w = images.shape
    if offsets.shape != (b, 2):
        raise ValueError(f"offsets must be ({b}, 2), got {tuple(offsets.shape)}.")
    # one gather for the batch (no per-image loop, no host sync): crop pixel (i, j) of the tiling is
    # image pixel ((top + i) mod H, (left + j) mod W)
    offsets = offsets.to(images.device)
    rows = (offsets[:, :1] + torch.arange(h, device=images.device)) % h  # (B, H)
    cols = (offsets[:, 1:] + torch.arange(w, device=images.device)) % w  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def shuffle_texture(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The CGN texture "shuffler": tile 2x2, then a random image-size crop per image (`generator` seeds it)."""
    b, _, h, w = images.shape
    top = torch.randint(0, h + 1, (b,), generator=generator, device=images.device)
    left = torch.randint(0, w + 1, (b,), generator=generator, device=images.device)
    return tile_and_crop(images, torch.stack([top, left], dim=1))


@dataclass
class CGNOutput(ModelOutput):
    """Outputs of a CGN: the composed `images` = mask * foreground + (1 - mask) * background.

    `images`, `foreground`, `background` are (B, C, H, W) in [-1, 1]; `mask` is (B, 1, H, W) in
    `config.mask_clamp`. `foreground` and `background` are the parts actually composed (after shuffling).
    """

    images: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    foreground: torch.FloatTensor | None = None
    background: torch.FloatTensor | None = None


@dataclass
class CGNMaskEncoderOutput(ModelOutput):
    """`mask` (B, 1, H, W) in `config.mask_clamp`; `loss` = binary cross-entropy against `target_masks`, if given."""

    loss: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None


class CGNMechanism(nn.Module):
    """One conditional generator: [u, embed(y)] -> Linear -> (2 ngf, s/4, s/4) -> 2 x [up, conv, BN, LReLU] -> conv."""

    def __init__(self, config: CGNConfig, out_channels: int):
        super().__init__()
        ngf, self.init_size = config.ngf, config.image_size // 4
        self.label_embedding = nn.Embedding(config.num_classes, config.embedding_dim)
        self.linear = nn.Linear(config.latent_dim + config.embedding_dim, 2 * ngf * self.init_size**2)
        layers = []
        for cin, cout in ((2 * ngf, 2 * ngf), (2 * ngf, ngf)):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(ngf, out_channels, 3, padding=1))
        self.blocks = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(torch.cat([noise, self.label_embedding(labels)], dim=-1))
        return self.blocks(hidden.view(len(labels), -1, self.init_size, self.init_size))


def check_labels(config: CGNConfig, **labels) -> dict[str, torch.Tensor]:
    """Labels as 1-D long tensors of one shared length n > 0 with ids in [0, num_classes)."""
    out = {}
    for name, y in labels.items():
        y = torch.as_tensor(y)
        if y.ndim == 1 and len(y) == 0:
            raise ValueError(f"{name} is empty: need n > 0 class ids.")
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(
                f"{name} must be a 1-D sequence of integer class ids, got {y.dtype} of shape {tuple(y.shape)}."
            )
        out[name] = y.long()
    lengths = {name: len(y) for name, y in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"label lengths differ: {lengths}; give one class id per image to every mechanism.")
    if torch.compiler.is_compiling():  # a host sync would break the graph; eager calls check the range
        return out
    device = next(iter(out.values())).device
    ids = torch.stack([y.to(device) for y in out.values()])
    low, high = torch.stack(ids.aminmax()).tolist()  # one host sync, not two per label
    if low < 0 or high >= config.num_classes:
        name, y = next((n, y) for n, y in out.items() if (y < 0).any() or (y >= config.num_classes).any())
        raise ValueError(f"{name} has class ids outside [0, {config.num_classes}): {y.tolist()}.")
    return out


class CGNPreTrainedModel(PreTrainedModel):
    config_class = CGNConfig
    base_model_prefix = "cgn"
    main_input_name = "shape_labels"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # the authors' init_net: orthogonal weights with gain 0.1 (it keeps early masks near 0.5 and
        # textures near 0), zero biases; BatchNorm and embeddings keep the PyTorch defaults
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(module.weight, gain=0.1)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class CounterfactualGenerativeNetwork(CGNPreTrainedModel):
    """CGN generator: shape, foreground-texture and background mechanisms, composed by x = m f + (1 - m) b."""

    def __init__(self, config: CGNConfig):
        super().__init__(config)
        self.shape = CGNMechanism(config, 1)
        self.foreground = CGNMechanism(config, config.num_channels)
        self.background = CGNMechanism(config, config.num_channels)
        self.post_init()

    def _noise(self, noise, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        size = (n, self.config.latent_dim)
        if noise is None:
            noise = torch.randn(size, generator=generator, device=self.device, dtype=self.dtype)
        noise = tuple(noise) if isinstance(noise, list | tuple) else (noise,) * 3
        if len(noise) != 3 or any(u.shape != size for u in noise):
            raise ValueError(
                f"noise must be one ({n}, {self.config.latent_dim}) tensor shared by the three mechanisms "
                f"or a tuple of three such tensors (shape, foreground, background)."
            )
        return noise

    def forward(
        self,
        shape_labels: torch.Tensor,
        texture_labels: torch.Tensor,
        background_labels: torch.Tensor,
        noise: torch.Tensor | Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        reorient: bool = False,
        return_dict: bool = True,
        **kwargs,
    ) -> CGNOutput | tuple:
        """Generate images whose shape, foreground texture and background have the given classes.

        `noise` is one (B, latent_dim) tensor used by all three mechanisms or a tuple of three; `None`
        draws one shared u with `generator`. `generator` also drives the texture shuffler. `reorient`
        turns `config.inverted_classes` right side out (`generate` does; training does not).
        """
        labels = check_labels(
            self.config,
            shape_labels=shape_labels,
            texture_labels=texture_labels,
            background_labels=background_labels,
        )
        ys = [y.to(self.device) for y in labels.values()]
        u_shape, u_fg, u_bg = self._noise(noise, len(ys[0]), generator)

        low, high = self.config.mask_clamp
        mask = torch.sigmoid(self.shape(u_shape, ys[0])).clamp(low, high)
        foreground = torch.tanh(self.foreground(u_fg, ys[1]))
        background = torch.tanh(self.background(u_bg, ys[2]))
        if reorient and self.config.inverted_classes:
            if self.training:  # BatchNorm would see only the swapped rows
                raise ValueError("reorient=True samples in eval mode: call .eval() first (generate() does).")
            # only the rows of inverted classes run the other mechanism (eval mode: rows are independent)
            inverted = torch.zeros(self.config.num_classes, dtype=torch.bool, device=self.device)
            inverted[self.config.inverted_classes] = True
            shape_in, texture_in, background_in = (inverted[y] for y in ys)
            mask = torch.where(shape_in[:, None, None, None], 1 - mask, mask)
            if texture_in.any():
                swapped = torch.tanh(self.background(u_fg[texture_in], ys[1][texture_in]))
                foreground = foreground.index_put((texture_in,), swapped)
            if background_in.any():
                swapped = torch.tanh(self.foreground(u_bg[background_in], ys[2][background_in]))
                background = background.index_put((background_in,), swapped)
        if self.config.shuffle_texture:
            foreground = shuffle_texture(foreground, generator)
            background = shuffle_texture(background, generator)
        images = mask * foreground + (1 - mask) * background  # C(m, f, b)

        if not return_dict:
            return images, mask, foreground, background
        return CGNOutput(images=images, mask=mask, foreground=foreground, background=background)

    @torch.no_grad()
    def generate(
        self,
        shape_labels: torch.Tensor | Sequence[int],
        texture_labels: torch.Tensor | Sequence[int],
        background_labels: torch.Tensor | Sequence[int],
        seed: int = 0,
        shared_noise: bool = False,
        masks: torch.Tensor | None = None,
    ) -> CGNOutput:
        """Sample (counterfactual) images in eval mode without gradients; the same seed gives the same images.

        Each mechanism gets its own noise (the authors' counterfactual sampling) unless `shared_noise`.
        Noise is drawn in the order shape, foreground, background, so changing one mechanism's class
        leaves the other two parts unchanged. Outputs are in [-1, 1]; see `to_unit_range`. `masks`
        (n, 1, H, W) in [0, 1], e.g. real images' masks from [`CGNMaskEncoder`], replace the shape
        mechanism's (then clamped to `config.mask_clamp`); `shape_labels` still name the shape class.
        """
        labels = check_labels(
            self.config,
            shape_labels=shape_labels,
            texture_labels=texture_labels,
            background_labels=background_labels,
        )
        n = len(labels["shape_labels"])
        generator = torch.Generator(device=self.device).manual_seed(seed)
        size = (n, self.config.latent_dim)
        draws = 1 if shared_noise else 3
        noise = [
            torch.randn(size, generator=generator, device=self.device, dtype=self.dtype) for _ in range(draws)
        ]
        if masks is not None:
            expected = (n, 1, self.config.image_size, self.config.image_size)
            if tuple(masks.shape) != expected:
                raise ValueError(f"masks must be {expected} (one per label), got {tuple(masks.shape)}.")
            if masks.min() < 0 or masks.max() > 1:
                raise ValueError("masks must lie in [0, 1].")
            masks = masks.to(self.device, self.dtype).clamp(*self.config.mask_clamp)
        was_training = self.training
        self.eval()
        try:
            noise = noise * 3 if shared_noise else noise
            out = self(*labels.values(), noise=noise, generator=generator, reorient=True)
        finally:
            self.train(was_training)
        if masks is not None:
            out.mask, out.images = masks, masks * out.foreground + (1 - masks) * out.background
        return out

    @torch.no_grad()
    def orient_classes(self, num_samples: int = 200, border_width: int = 2, seed: int = 0) -> list[int]:
        """Find the classes whose mask covers more than half of the `border_width` frame, or more of it than
        of the image's central half (inside out), store them in `config.inverted_classes` and return them.
        The centred-object prior of the training's L_border, applied after it: the composition cannot tell
        (m, f, b) from (1 - m, b, f) on class-tied data. The second test catches a wide item (a sneaker)
        learned inside out, which can cover a little under half the frame and little of the centre."""
        k = self.config.num_classes
        labels = torch.arange(k, device=self.device).repeat_interleave(num_samples)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        noise = torch.randn(labels.numel(), self.config.latent_dim, generator=generator, device=self.device)
        was_training = self.training
        self.eval()
        try:
            mask = self(labels, labels, labels, noise=noise.to(self.dtype), generator=generator).mask
        finally:
            self.train(was_training)
        _, centre = frame_and_centre(*mask.shape[-2:], border_width, mask.device)
        self.config.inverted_classes = []
        for c, class_masks in enumerate(mask.split(num_samples)):
            frame = mask_border_loss(class_masks, border_width)
            if frame > 0.5 or frame > class_masks[..., centre].mean():
                self.config.inverted_classes.append(c)
        return self.config.inverted_classes


class CGNDiscriminator(CGNPreTrainedModel):
    """Conditional discriminator D(x, y) -> (B,) real/fake scores (no sigmoid: LSGAN targets 1 / 0).

    `disc_type="mlp"`: the authors' MLP over the flattened image (widths `disc_hidden`, dropout
    `disc_dropout`, LeakyReLU 0.2, spectrally normalised linears with `disc_spectral_norm`) with
    features phi(x) from its last hidden layer; `disc_type="conv"`: three 4x4 stride-2 convs
    (`disc_channels` x 1 / 2 / 4, LeakyReLU 0.2; spectral norm with `disc_spectral_norm`, else DCGAN's
    BatchNorm) with phi(x) their flattened last map. Both score w . phi(x) + embed(y) . phi(x) (projection
    conditioning, Miyato & Koyama 2018), or, for the MLP with `disc_conditioning="concat"`, the
    authors' way: a label embedding concatenated to the flattened image, scored by a last linear layer.

    A `PreTrainedModel` sharing `CGNConfig` (not a bare `nn.Module`) so a GAN checkpoint saves and
    resumes both networks the same way (`save_pretrained` / `from_pretrained`, safetensors, one
    config). It is not registered with `AutoModel`, which maps `CGNConfig` to the generator.
    """

    main_input_name = "pixel_values"

    def __init__(self, config: CGNConfig):
        super().__init__(config)
        norm = spectral_norm if config.disc_spectral_norm else lambda layer: layer
        if config.disc_type == "mlp":
            hidden, p = config.disc_hidden, config.disc_dropout
            concat = config.disc_conditioning == "concat"
            self.label_embedding = nn.Embedding(
                config.num_classes, config.embedding_dim if concat else hidden
            )
            in_features = config.num_channels * config.image_size**2 + (config.embedding_dim if concat else 0)
            self.model = nn.Sequential(
                norm(nn.Linear(in_features, hidden)),
                nn.LeakyReLU(0.2),
                norm(nn.Linear(hidden, hidden)),
                nn.Dropout(p),
                nn.LeakyReLU(0.2),
                norm(nn.Linear(hidden, hidden)),
                nn.Dropout(p),
                nn.LeakyReLU(0.2),
            )
            self.head = norm(nn.Linear(hidden, 1))
        else:
            # three 4x4 stride-2 convs (32 -> 16 -> 8 -> 4 px), features = the flattened last map: it keeps
            # where things are, which a global pool over a 12-px receptive field loses on a 32-px silhouette
            ch, cin, size = config.disc_channels, config.num_channels, config.image_size
            layers = []
            for i, cout in enumerate((ch, 2 * ch, 4 * ch)):
                batch_norm = i > 0 and not config.disc_spectral_norm  # DCGAN: none after the first conv
                layers.append(norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not batch_norm)))
                layers += [nn.BatchNorm2d(cout)] if batch_norm else []
                layers.append(nn.LeakyReLU(0.2))
                cin, size = cout, size // 2
            self.model = nn.Sequential(*layers, nn.Flatten())
            features = cin * size**2
            self.head = norm(nn.Linear(features, 1))
            self.label_embedding = nn.Embedding(config.num_classes, features)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        cfg = self.config
        expected = (cfg.num_channels, cfg.image_size, cfg.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must be (batch, {', '.join(map(str, expected))}), got {tuple(pixel_values.shape)}."
            )
        labels = check_labels(cfg, labels=labels)["labels"].to(pixel_values.device)
        if len(labels) != len(pixel_values):
            raise ValueError(f"got {len(pixel_values)} images but {len(labels)} labels.")
        if cfg.disc_type == "mlp" and cfg.disc_conditioning == "concat":
            features = self.model(torch.cat([pixel_values.flatten(1), self.label_embedding(labels)], dim=-1))
            return self.head(features)[:, 0]
        features = self.model(pixel_values.flatten(1) if cfg.disc_type == "mlp" else pixel_values)
        return self.head(features)[:, 0] + (self.label_embedding(labels) * features).sum(dim=-1)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # keep PyTorch's default init, as the authors' linear discriminator: the generator's orthogonal
        # 0.1-gain init scales each of D's layers by ~0.1 and slows it to learn class-conditional shapes
        # (colored, 800 steps: oracle-classifier shape accuracy of the counterfactuals 0.10 with it, 0.23 without)
        pass


class CGNMaskEncoder(CGNPreTrainedModel):
    """The shape mechanism inverted: an image -> its shape mask m (not in the paper).

    Fitted to a trained CGN's own compositions, where m is known (`fit_mask_encoder`), it finds the mask of
    a real image, so the counterfactuals of that image keep its real shape and take a texture and a
    background of other classes from the CGN (`generate(..., masks=...)`). 3x3 convs dilated by
    `config.encoder_dilations` (by default 1, 2, 4, 8, 1: receptive field 33 px) and a 1x1, full resolution
    throughout. Shares `CGNConfig` as the discriminator does.
    """

    main_input_name = "pixel_values"

    def __init__(self, config: CGNConfig):
        super().__init__(config)
        ch, layers, cin = config.encoder_channels, [], config.num_channels
        for dilation in config.encoder_dilations:
            layers += [nn.Conv2d(cin, ch, 3, padding=dilation, dilation=dilation), nn.ReLU()]
            cin = ch
        self.model = nn.Sequential(*layers, nn.Conv2d(ch, 1, 1))
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, target_masks: torch.Tensor | None = None, **kwargs
    ) -> CGNMaskEncoderOutput:
        cfg = self.config
        expected = (cfg.num_channels, cfg.image_size, cfg.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must be (batch, {', '.join(map(str, expected))}) in [-1, 1], "
                f"got {tuple(pixel_values.shape)}."
            )
        logits = self.model(pixel_values)
        loss = None
        if target_masks is not None:
            if target_masks.shape != logits.shape:
                raise ValueError(
                    f"target_masks must be {tuple(logits.shape)}, got {tuple(target_masks.shape)}."
                )
            loss = nn.functional.binary_cross_entropy_with_logits(logits, target_masks)
        return CGNMaskEncoderOutput(loss=loss, mask=torch.sigmoid(logits).clamp(*cfg.mask_clamp))

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        pass  # PyTorch's default init (the generator's orthogonal 0.1 gain would shrink every layer)


__all__ = [
    "CGNDiscriminator",
    "CGNMaskEncoder",
    "CGNMaskEncoderOutput",
    "CGNOutput",
    "CGNPreTrainedModel",
    "CounterfactualGenerativeNetwork",
    "shuffle_texture",
    "tile_and_crop",
    "to_unit_range",
]
