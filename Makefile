# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-run

.PHONY: demo test docs lint cards clean

$(BIN)/ikl-zoo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev,docs]"
	touch $@

demo: $(BIN)/ikl-zoo
	HF_HUB_OFFLINE=1 $(BIN)/ikl-zoo list
	HF_HUB_OFFLINE=1 $(BIN)/ikl-zoo sample-data --out $(DEMO_DIR)/data
	HF_HUB_OFFLINE=1 $(BIN)/ikl-zoo eval --model demo-resnet18 --dataset cifar10 \
		--data-dir $(DEMO_DIR)/data --n-examples 20 --eps 8/255 --version standard \
		--no-download --out $(DEMO_DIR)/eval --resume

# The tests, then the documentation: a broken link or a stale API reference fails too.
test: $(BIN)/ikl-zoo
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory docs

docs: $(BIN)/ikl-zoo
	$(BIN)/mkdocs build --strict --site-dir site

lint: $(BIN)/ikl-zoo
	$(BIN)/ruff check src tests benchmarks

cards: $(BIN)/ikl-zoo
	$(BIN)/ikl-zoo card --all -o cards

clean:
	rm -rf $(VENV) $(DEMO_DIR) site build *.egg-info src/*.egg-info
