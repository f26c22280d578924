"""Configuration of the MNIST-scale Counterfactual Generative Network (CGN, arXiv 2101.06046)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class CGNConfig(PreTrainedConfig):
    r"""
    Configuration of [`CounterfactualGenerativeNetwork`] (three conditional generators: shape mask,
    foreground texture, background) and of its conditional discriminator [`CGNDiscriminator`]. The
    defaults are the authors' MNIST-scale settings (32x32 RGB, latent 32, ngf 32, MLP discriminator 512).

    Args:
        num_classes (`int`, *optional*, defaults to 10):
            Classes of each mechanism (shape, foreground texture, background all use ids in
            `[0, num_classes)`).
        image_size (`int`, *optional*, defaults to 32):
            Side of the square generated images; must be divisible by 4 (two x2 upsamplings).
        latent_dim (`int`, *optional*, defaults to 32): size of the noise u ~ N(0, I).
        ngf (`int`, *optional*, defaults to 32):
            Generator width: the trunk starts at `2 * ngf` channels and ends at `ngf`.
        embedding_dim (`int`, *optional*, defaults to 10):
            Size of the learned label embeddings (the authors use `num_classes`).
        num_channels (`int`, *optional*, defaults to 3): channels of the textures and images.
        mask_clamp (`tuple[float, float]`, *optional*, defaults to `(1e-4, 0.9999)`):
            The mask is clamped to this range after its sigmoid.
        shuffle_texture (`bool`, *optional*, defaults to `True`):
            Tile foreground and background 2x2 and take a random `image_size` crop, so texture cannot
            carry shape.
        inverted_classes (`list[int]`, *optional*):
            Classes the generator learned inside out: the shape mask on the background and the two texture
            mechanisms swapped, which reproduces class-tied training images exactly. `generate` re-orients
            them (mask 1 - m; a texture or background of such a class from the other mechanism), else
            counterfactuals would tie colours to shapes. Set by `orient_classes()` after training.
        disc_type (`str`, *optional*, defaults to `"mlp"`):
            `"mlp"` (an MLP over the flattened image; the authors' colored MNIST discriminator) or
            `"conv"` (three strided convs with projection conditioning; the authors' choice for textured
            variants). On the Fashion-MNIST variants the conv one draws sharper shapes on colored but its
            counterfactuals train no better classifiers, and worse ones elsewhere (benchmarks/README.md).
        disc_conditioning (`str`, *optional*, defaults to `"projection"`):
            How the MLP discriminator sees the class: `"projection"` (score = w . h(x) + embed(y) . h(x),
            Miyato & Koyama 2018) or `"concat"` (a label embedding concatenated to the flattened image, as
            the authors). Projection learns class-specific shapes several times faster (see
            benchmarks/README.md). The conv discriminator always uses projection.
        disc_hidden (`int`, *optional*, defaults to 512): width of the MLP discriminator.
        disc_dropout (`float`, *optional*, defaults to 0.4): dropout of the MLP discriminator.
        disc_spectral_norm (`bool`, *optional*, defaults to `True`):
            Spectral normalisation (Miyato et al. 2018) of the discriminator's linear and conv layers. It
            bounds D's scores, which keeps the unbounded LSGAN from diverging and makes shapes learn
            faster (see benchmarks/README.md). Without it the conv discriminator uses BatchNorm (DCGAN).
        disc_channels (`int`, *optional*, defaults to 32): base channels of the conv discriminator.
        encoder_channels (`int`, *optional*, defaults to 32):
            Width of [`CGNMaskEncoder`], which predicts the shape mask of an image (not in the paper).
        encoder_dilations (`tuple[int, ...]`, *optional*, defaults to `(1, 2, 4, 8, 1)`):
            One 3x3 conv of [`CGNMaskEncoder`] per entry, with this dilation; the receptive field is
            1 + 2 * sum. 33 px sees a whole 32 px item, so a background stripe is not taken for the object.
    """

    model_type = "cgn"

    num_classes: int = 10
    image_size: int = 32
    latent_dim: int = 32
    ngf: int = 32
    embedding_dim: int = 10
    num_channels: int = 3
    mask_clamp: tuple[float, float] | list[float] = (1e-4, 0.9999)
    shuffle_texture: bool = True
    inverted_classes: list[int] | None = None
    disc_type: str = "mlp"
    disc_conditioning: str = "projection"
    disc_hidden: int = 512
    disc_dropout: float = 0.4
    disc_spectral_norm: bool = True
    disc_channels: int = 32
    encoder_channels: int = 32
    encoder_dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 1)

    def validate_cgn(self):
        """Short errors for settings the model cannot run with."""
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}.")
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {self.image_size}.")
        for name in (
            "latent_dim",
            "ngf",
            "embedding_dim",
            "num_channels",
            "disc_hidden",
            "disc_channels",
            "encoder_channels",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.encoder_dilations or min(self.encoder_dilations) < 1:
            raise ValueError(
                f"encoder_dilations must be a non-empty list of ints >= 1, got {self.encoder_dilations}."
            )
        low, high = self.mask_clamp
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(
                f"mask_clamp must be (low, high) with 0 <= low < high <= 1, got {self.mask_clamp}."
            )
        inverted = self.inverted_classes or []
        if len(set(inverted)) != len(inverted) or any(not 0 <= c < self.num_classes for c in inverted):
            raise ValueError(
                f"inverted_classes must be distinct class ids in [0, {self.num_classes}), got {inverted}."
            )
        if self.disc_type not in ("mlp", "conv"):
            raise ValueError(f"disc_type must be 'mlp' or 'conv', got {self.disc_type!r}.")
        if self.disc_conditioning not in ("projection", "concat"):
            raise ValueError(
                f"disc_conditioning must be 'projection' or 'concat', got {self.disc_conditioning!r}."
            )
        if self.disc_type == "conv" and self.image_size < 8:
            raise ValueError(f"the conv discriminator needs image_size >= 8, got {self.image_size}.")
        if self.disc_type == "conv" and self.disc_conditioning != "projection":
            raise ValueError("the conv discriminator supports only disc_conditioning='projection'.")
        if not 0.0 <= self.disc_dropout < 1.0:
            raise ValueError(f"disc_dropout must be in [0, 1), got {self.disc_dropout}.")


__all__ = ["CGNConfig"]
