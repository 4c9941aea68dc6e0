"""Model cards and pushes to the Hugging Face Hub."""

from .card import (
    CARD_METRICS,
    CODE_FILES,
    OFFICIAL_HYPERPARAMETERS,
    REQUIRED_FILES,
    UPLOAD_IGNORE_PATTERNS,
    RunInfo,
    card_eval_results,
    check_repo_folder,
    default_template_path,
    files_to_upload,
    push_to_hub,
    render_model_card,
    to_eval_result,
    validate_model_card,
    write_model_card,
    write_widget_example,
)

__all__ = [
    "CARD_METRICS",
    "CODE_FILES",
    "OFFICIAL_HYPERPARAMETERS",
    "REQUIRED_FILES",
    "RunInfo",
    "UPLOAD_IGNORE_PATTERNS",
    "card_eval_results",
    "check_repo_folder",
    "default_template_path",
    "files_to_upload",
    "push_to_hub",
    "render_model_card",
    "to_eval_result",
    "validate_model_card",
    "write_model_card",
    "write_widget_example",
]
