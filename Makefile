PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRANSFORMERS_VERSION := 5.24.0
# transformers' own common model tests (ModelTesterMixin, ConfigTester, ImageProcessingTestMixin) ship in its source
# distribution only; the test suite runs them against SparseViT from here.
TRANSFORMERS_TESTS := $(VENV)/transformers-tests

.PHONY: install test demo clean

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

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		TRANSFORMERS_TESTS_DIR=$(CURDIR)/$(TRANSFORMERS_TESTS) $(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
