"""Image manipulation localization data: data set specs and layouts (`loaders`, `layouts`, `hf_datasets`), decoding
of rows (`decoding`, through the package's one decoder), validation, balanced sampling; the synthetic tampering
generator, training augmentations and robustness perturbations live in their own modules."""

from ..image_decoding_sparsevit import IMAGE_EXTENSIONS
from .decoding import image_size, load_example, load_image, load_mask, with_decoding
from .errors import CorruptImageError, IMLDatasetError, MaskSizeMismatchError, MissingFilesError, UnpairedImagesError
from .features import LABEL_NAMES, iml_features
from .layouts import MASK_SUFFIXES
from .loaders import IMLDatasetBundle, load_iml_bundle, load_iml_dataset
from .sampling import DEFAULT_PER_DATASET, BalancedSampler, balanced_epoch_indices
from .validation import ValidationReport, validate_dataset

__all__ = [
    "BalancedSampler",
    "CorruptImageError",
    "DEFAULT_PER_DATASET",
    "IMAGE_EXTENSIONS",
    "IMLDatasetBundle",
    "IMLDatasetError",
    "LABEL_NAMES",
    "MASK_SUFFIXES",
    "MaskSizeMismatchError",
    "MissingFilesError",
    "UnpairedImagesError",
    "ValidationReport",
    "balanced_epoch_indices",
    "image_size",
    "iml_features",
    "load_example",
    "load_image",
    "load_iml_bundle",
    "load_iml_dataset",
    "load_mask",
    "validate_dataset",
    "with_decoding",
]
