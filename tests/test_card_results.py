"""`sparsevit-evaluate --update-card`: evaluation results merged into a model folder's card metadata."""

import pytest
from huggingface_hub import ModelCard

from sparsevit_hf.hub.card import render_model_card
from sparsevit_hf.hub.card_results import evaluation_card_entries, update_card_results


def results(f1, protocol="exact"):
    return {
        "settings": {"protocol": protocol, "mode": "resize", "threshold": 0.5},
        "sets": {
            "casia": {
                "metrics": {"pixel_f1": f1, "pixel_auc": 0.8, "image_auc": float("nan")},
                "content_gap": f1 - 0.3,
                "baselines": {"content_free_f1": 0.3, "shuffled_f1": 0.1},
            }
        },
    }


def metrics_of(card):
    return {(r.dataset_name, r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}


def test_entries_hold_the_metrics_the_baselines_and_the_content_gap_with_the_protocol():
    entries = evaluation_card_entries(results(0.5))
    assert {e["metric"] for e in entries} == {"pixel_f1", "pixel_auc", "content_gap", "content_free_f1", "shuffled_f1"}
    assert {e["metric_config"] for e in entries} == {"protocol=exact,mode=resize,threshold=0.5"}


def test_update_replaces_the_same_configuration_and_keeps_every_other_entry(tmp_path):
    card = render_model_card({"model_id": "me/m", "eval_results": [{"dataset": "casia", "metric": "pixel_f1",
                                                                    "value": 0.1}]})
    (tmp_path / "README.md").write_text(str(card))
    update_card_results(tmp_path, evaluation_card_entries(results(0.5)))
    update_card_results(tmp_path, evaluation_card_entries(results(0.6)))  # a re-run replaces, never duplicates
    update_card_results(tmp_path, evaluation_card_entries(results(0.4, protocol="imdlbenco")))
    loaded = metrics_of(ModelCard.load(tmp_path / "README.md"))
    exact, imdlbenco = "protocol=exact,mode=resize,threshold=0.5", "protocol=imdlbenco,mode=resize,threshold=0.5"
    assert loaded[("casia", "pixel_f1", None)] == 0.1  # the training run's entry stays
    assert loaded[("casia", "pixel_f1", exact)] == 0.6
    assert loaded[("casia", "pixel_f1", imdlbenco)] == 0.4
    assert loaded[("casia", "content_gap", exact)] == pytest.approx(0.3)
    assert len(loaded) == 1 + 2 * 5
    assert "# m" in (tmp_path / "README.md").read_text()  # the card's text is kept


def test_a_folder_without_a_card_gets_a_new_one(tmp_path):
    update_card_results(tmp_path, evaluation_card_entries(results(0.5)))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.model_name == tmp_path.name
    assert metrics_of(card)[("casia", "pixel_f1", "protocol=exact,mode=resize,threshold=0.5")] == 0.5


def test_updating_a_missing_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        update_card_results(tmp_path / "nope", evaluation_card_entries(results(0.5)))
