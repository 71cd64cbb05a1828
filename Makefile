# The two commands the README promises: `make demo` and `make test`.
# Both create .venv on first use and install veil with its test dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The core demo in-process, then the inference and training examples as real parties
# (one OS process each, mutual TLS on loopback, a separate dealer process).
demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/veil run -n 2 examples/private_inference.py
	$(BIN)/veil run -n 2 examples/credit_scoring.py
	$(BIN)/veil run -n 2 examples/credit_scoring.py --dp-epsilon 3 --epochs 2
	$(BIN)/veil run -n 2 examples/encrypted_credit_score.py
	$(BIN)/veil run -n 2 examples/ad_attribution.py
	$(BIN)/python examples/federated_hospitals.py

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python -m veil.bench

clean:
	rm -rf $(VENV) build *.egg-info
