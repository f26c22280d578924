"""Data: sources (Hub when online, local fallbacks) and transforms to model inputs."""

from .background_shift import BackgroundShiftConfig, background_shift_config_of, build_background_shift
from .cgn_variants import CGN_PALETTE, CgnVariantConfig, build_cgn_variant, cgn_variant_config_of
from .localisation import LocalisationSceneConfig, build_localisation_scenes, localisation_config_of
from .mosaics import CooccurrenceMosaicConfig, build_cooccurrence_mosaics, mosaic_config_of
from .sources import (
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_HUB_ID,
    FASHION_MNIST_LABELS,
    ITEM_SOURCES,
    VOC_CLASSES,
    DataSourceNotFoundError,
    load_coco_multilabel,
    load_digits_dataset,
    load_fashion_mnist,
    load_item_source,
    load_voc_multilabel,
    read_idx,
)
from .transforms import (
    ImageClassificationCollator,
    ImageCollator,
    MultiLabelCollator,
    MultiLabelZoomCrop,
    decode_image,
)

__all__ = [
    "BackgroundShiftConfig",
    "background_shift_config_of",
    "build_background_shift",
    "CGN_PALETTE",
    "CgnVariantConfig",
    "build_cgn_variant",
    "cgn_variant_config_of",
    "LocalisationSceneConfig",
    "build_localisation_scenes",
    "localisation_config_of",
    "CooccurrenceMosaicConfig",
    "build_cooccurrence_mosaics",
    "mosaic_config_of",
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_HUB_ID",
    "FASHION_MNIST_LABELS",
    "ITEM_SOURCES",
    "VOC_CLASSES",
    "DataSourceNotFoundError",
    "ImageClassificationCollator",
    "ImageCollator",
    "MultiLabelCollator",
    "MultiLabelZoomCrop",
    "decode_image",
    "load_coco_multilabel",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_item_source",
    "load_voc_multilabel",
    "read_idx",
]
