from transformers import AutoConfig, AutoModel

from .configuration_cgn import CGNConfig
from .counterfactuals import (
    batch_seed,
    class_names,
    generate_counterfactual_dataset,
    save_counterfactual_grid,
    save_image_grid,
    to_uint8,
)
from .losses import (
    RandomConvFeatures,
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
    "RandomConvFeatures",
    "CGNConfig",
    "CGNDiscriminator",
    "CGNOutput",
    "CounterfactualGenerativeNetwork",
    "batch_seed",
    "class_names",
    "generate_counterfactual_dataset",
    "gram_matrix",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mask_binary_entropy",
    "mask_size_loss",
    "save_counterfactual_grid",
    "save_image_grid",
    "shuffle_texture",
    "style_loss",
    "tile_and_crop",
    "to_uint8",
    "to_unit_range",
]
