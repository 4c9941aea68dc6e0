"""SparseViT image manipulation localization for Hugging Face Transformers.

Importing the package registers the model with the Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSemanticSegmentation,
)

from .configuration_sparsevit import SparseViTConfig
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

__all__ = [
    "SparseViTConfig",
    "SparseViTForManipulationLocalization",
    "SparseViTModel",
    "SparseViTModelOutput",
    "SparseViTPreTrainedModel",
]
