"""Hub repositories for SparseViT: model cards, pushes, the Inference Endpoints handler and the Gradio Space."""

from .card import (
    CARD_METRICS,
    EXAMPLE_OUTPUT_IMAGE,
    OFFICIAL_HYPERPARAMETERS,
    RunInfo,
    card_eval_results,
    default_template_path,
    find_widget_example,
    render_model_card,
    to_eval_result,
    validate_model_card,
    write_model_card,
    write_widget_example,
    write_widget_output,
)
from .endpoint import ENDPOINT_FILES, requirements_text, runtime_requirements, write_endpoint_files
from .push import CODE_FILES, REQUIRED_FILES, UPLOAD_IGNORE_PATTERNS, check_repo_folder, files_to_upload, push_to_hub
from .space import GRADIO_VERSION, SPACE_FILES, push_space, write_space

__all__ = [
    "CARD_METRICS",
    "CODE_FILES",
    "ENDPOINT_FILES",
    "EXAMPLE_OUTPUT_IMAGE",
    "GRADIO_VERSION",
    "OFFICIAL_HYPERPARAMETERS",
    "REQUIRED_FILES",
    "RunInfo",
    "SPACE_FILES",
    "UPLOAD_IGNORE_PATTERNS",
    "card_eval_results",
    "check_repo_folder",
    "default_template_path",
    "files_to_upload",
    "find_widget_example",
    "push_space",
    "push_to_hub",
    "render_model_card",
    "requirements_text",
    "runtime_requirements",
    "to_eval_result",
    "validate_model_card",
    "write_endpoint_files",
    "write_model_card",
    "write_space",
    "write_widget_example",
    "write_widget_output",
]
