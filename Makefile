PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRANSFORMERS_VERSION := 5.24.0
# transformers' own common model tests (ModelTesterMixin, ConfigTester, ImageProcessingTestMixin) ship in its source
# distribution only; the test suite runs them against SparseViT from here.
TRANSFORMERS_TESTS := $(VENV)/transformers-tests

.PHONY: install test lint demo clean

$(STAMP): setup.cfg pyproject.toml requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: unpinned, pip would resolve a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c requirements-test.txt -e ".[test]"
	rm -rf $(TRANSFORMERS_TESTS) $(VENV)/sdist
	$(BIN)/pip download --quiet --no-deps --no-binary :all: transformers==$(TRANSFORMERS_VERSION) -d $(VENV)/sdist
	mkdir -p $(TRANSFORMERS_TESTS)
	tar -xzf $(VENV)/sdist/transformers-$(TRANSFORMERS_VERSION).tar.gz -C $(TRANSFORMERS_TESTS) \
		--strip-components=2 --wildcards 'transformers-$(TRANSFORMERS_VERSION)/tests/*.py'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks

test: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		TRANSFORMERS_TESTS_DIR=$(CURDIR)/$(TRANSFORMERS_TESTS) $(BIN)/python -m pytest -q tests

# The built-in default data (synthetic tampering from scikit-image's photographs), sized for a 2-core CPU: the small
# preset at 128 px for 2400 steps (BCE + Dice, no augmentation: the recipe measured in docs/demo_recipes.md), trained
# on train-photograph images with larger regions and evaluated on 150 held-out test-photograph images generated with
# the default options, then predictions with overlays on held-out images the model never saw.
DEMO := demo_output
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/sparsevit-synthesize --output-dir $(DEMO)/test --num-images 150 --size 128 --seed 11 --split test \
		--no-progress
	$(BIN)/python examples/run_iml.py --output_dir $(DEMO)/model --model_preset small --image_size 128 \
		--train_data synthetic:train:num_images=1600,size=128 \
		--synthetic_options '{"region_fraction": [0.03, 0.4]}' \
		--eval_data synthetic_test=$(DEMO)/test \
		--no_augmentation --dice_loss_weight 1.0 --drop_path_rate 0.0 \
		--per_device_train_batch_size 8 --max_train_steps 2400 --learning_rate 2e-3 --min_lr 1e-5 \
		--warmup_steps 100 --eval_every_epochs 0 --logging_steps 50
	$(BIN)/sparsevit-synthesize --output-dir $(DEMO)/heldout --num-images 8 --size 128 --seed 7 --split test
	$(BIN)/sparsevit-predict $(DEMO)/model $(DEMO)/heldout/Tp --output-dir $(DEMO)/predictions

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
