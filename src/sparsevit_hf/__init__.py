"""SparseViT image manipulation localization for Hugging Face Transformers.

Importing the package registers the model with the Auto classes, and marks its classes so that `save_pretrained`
writes their code next to the weights: the saved folder then loads with `trust_remote_code=True` where the package
is not installed.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForSemanticSegmentation,
)
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

from .configuration_sparsevit import SparseViTConfig
from .image_processing_sparsevit import SparseViTImageProcessor
from .modeling_sparsevit import (
    SparseViTForManipulationLocalization,
    SparseViTModel,
    SparseViTModelOutput,
    SparseViTPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register("sparsevit", SparseViTConfig, exist_ok=True)
AutoModel.register(SparseViTConfig, SparseViTModel, exist_ok=True)
AutoModelForSemanticSegmentation.register(SparseViTConfig, SparseViTForManipulationLocalization, exist_ok=True)
AutoImageProcessor.register(SparseViTConfig, image_processor_classes={"pil": SparseViTImageProcessor}, exist_ok=True)
# The image-segmentation pipeline also looks for a video processor. Finding none registered, transformers derives a
# remote one from the image processor's auto_map and asks whether to trust the folder's code (waiting 15 s in an
# interactive session). An empty entry states locally that SparseViT has no video processor for any backend.
VIDEO_PROCESSOR_MAPPING.register(SparseViTConfig, {}, exist_ok=True)

SparseViTConfig.register_for_auto_class()
SparseViTModel.register_for_auto_class("AutoModel")
SparseViTForManipulationLocalization.register_for_auto_class("AutoModelForSemanticSegmentation")
SparseViTImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "SparseViTConfig",
    "SparseViTForManipulationLocalization",
    "SparseViTImageProcessor",
    "SparseViTModel",
    "SparseViTModelOutput",
    "SparseViTPreTrainedModel",
]
