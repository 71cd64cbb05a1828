# The two commands the README promises: `make demo` and `make test`.
# Both create .venv on first use and install veil with its test dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The PSI environment: spu (RR22 PSI) pins Python < 3.12 and numpy < 2 (veil/psi/rr22.py).
PSI_PY ?= $(PY)
PSI_VENV := .venv-psi
PSI_STAMP := $(PSI_VENV)/.installed

.PHONY: demo test bench clean psi-env

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(PSI_STAMP): requirements-psi.txt
	test -d $(PSI_VENV) || $(PSI_PY) -m venv $(PSI_VENV)
	$(PSI_VENV)/bin/pip install --quiet -r requirements-psi.txt
	$(PSI_VENV)/bin/python -c "import spu.libpsi"
	touch $(PSI_STAMP)

psi-env: $(PSI_STAMP)

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

test: $(STAMP) $(PSI_STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python -m veil.bench

clean:
	rm -rf $(VENV) build *.egg-info
	rm -rf $(PSI_VENV)
