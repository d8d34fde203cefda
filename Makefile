# One command each for a fresh machine (Python 3.11):
#   make run    set up .venv, train 20 epochs, write results/vae/grid.png
#   make test   set up .venv, lint, unit tests (the model's on all three backends),
#               notebooks (fast mode; chapters 1-8 on all three backends), book (fast)
#               + browser test
#   make book   build the full book (executes every chapter; trains 20 epochs once, then cached)
#   make bench  the training benchmark: seed vs keras.io vs this default (about 45 min on 2 cores)
# Offline? export VAE_MNIST_PATH=/path/to/mnist.npz (Keras' layout) first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint unit unit-backends notebooks notebooks-backends book book-fast browser-test bench clean

$(STAMP): requirements.txt requirements-backends.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python vae.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: setup
	$(BIN)/pytest tests -m "not browser" -p no:cacheprovider

# The model, its loss, the evaluation and the data again on the two other
# backends (the rest of the suite drives scripts that these already cover).
BACKEND_TESTS := tests/test_model.py tests/test_evaluation.py tests/test_grid.py tests/test_data.py
unit-backends: setup
	for backend in jax torch; do \
	  KERAS_BACKEND=$$backend $(BIN)/pytest $(BACKEND_TESTS) -p no:cacheprovider || exit 1; \
	done

notebooks: setup
	VAE_FAST=1 $(BIN)/pytest --nbmake --nbmake-timeout=900 chapters -p no:cacheprovider

# Chapters 1-8 on the two other backends (9 reads files, 10 runs on JAX anyway);
# each backend writes its runs into a folder of its own.
notebooks-backends: setup
	for backend in jax torch; do \
	  KERAS_BACKEND=$$backend VAE_FAST=1 VAE_RESULTS_DIR=$(CURDIR)/results/backends/$$backend \
	    $(BIN)/pytest --nbmake --nbmake-timeout=900 chapters/0[1-8]_*.ipynb \
	    -p no:cacheprovider || exit 1; \
	done

book: setup
	bash scripts/build_book.sh

book-fast: setup
	VAE_FAST=1 bash scripts/build_book.sh

browser-test: book-fast
	$(BIN)/pytest tests -m browser -p no:cacheprovider

test: lint unit unit-backends notebooks notebooks-backends browser-test

bench: setup
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf _build results/vae-fast results/backends .pytest_cache
