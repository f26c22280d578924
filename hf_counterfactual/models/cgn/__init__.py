from transformers import AutoConfig, AutoModel

from .configuration_cgn import CGNConfig
from .losses import (
    gram_matrix,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    mask_binary_entropy,
    mask_size_loss,
    style_loss,
)
from .modeling_cgn import (
    CGNDiscriminator,
    CGNOutput,
    CounterfactualGenerativeNetwork,
    shuffle_texture,
    tile_and_crop,
    to_unit_range,
)

AutoConfig.register("cgn", CGNConfig)
AutoModel.register(CGNConfig, CounterfactualGenerativeNetwork)

__all__ = [
    "CGNConfig",
    "CGNDiscriminator",
    "CGNOutput",
    "CounterfactualGenerativeNetwork",
    "gram_matrix",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mask_binary_entropy",
    "mask_size_loss",
    "shuffle_texture",
    "style_loss",
    "tile_and_crop",
    "to_unit_range",
]
