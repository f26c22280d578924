from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .color_masks import color_item_masks
from .configuration_cgn import CGNConfig
from .configuration_invariant_ensemble import InvariantEnsembleConfig
from .counterfactuals import (
    batch_seed,
    class_names,
    generate_counterfactual_dataset,
    save_counterfactual_grid,
    save_image_grid,
    save_mechanism_grid,
    to_uint8,
)
from .losses import (
    RandomConvFeatures,
    gram_matrix,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    mask_binary_entropy,
    mask_border_loss,
    mask_size_loss,
    mode_seeking_loss,
    style_loss,
)
from .modeling_cgn import (
    CGNDiscriminator,
    CGNMaskEncoder,
    CGNMaskEncoderOutput,
    CGNOutput,
    CounterfactualGenerativeNetwork,
    shuffle_texture,
    tile_and_crop,
    to_unit_range,
)
from .modeling_invariant_ensemble import InvariantEnsembleForImageClassification, InvariantEnsembleOutput

AutoConfig.register("cgn", CGNConfig)
AutoModel.register(CGNConfig, CounterfactualGenerativeNetwork)
AutoConfig.register("cgn_invariant_ensemble", InvariantEnsembleConfig)
AutoModelForImageClassification.register(InvariantEnsembleConfig, InvariantEnsembleForImageClassification)

__all__ = [
    "RandomConvFeatures",
    "CGNConfig",
    "CGNDiscriminator",
    "CGNMaskEncoder",
    "CGNMaskEncoderOutput",
    "CGNOutput",
    "CounterfactualGenerativeNetwork",
    "InvariantEnsembleConfig",
    "InvariantEnsembleForImageClassification",
    "InvariantEnsembleOutput",
    "batch_seed",
    "class_names",
    "color_item_masks",
    "generate_counterfactual_dataset",
    "gram_matrix",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mask_binary_entropy",
    "mask_border_loss",
    "mask_size_loss",
    "mode_seeking_loss",
    "save_counterfactual_grid",
    "save_image_grid",
    "save_mechanism_grid",
    "shuffle_texture",
    "style_loss",
    "tile_and_crop",
    "to_uint8",
    "to_unit_range",
]
