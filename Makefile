# Set-up and checks. `make demo` and `make test` each create or reuse .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LLAMA_CPP_VERSION := 0.3.36
WHEELS := .wheels
LLAMA_WHEEL_STAMP := $(WHEELS)/.llama-cpp-python-$(LLAMA_CPP_VERSION)

# llama.cpp is compiled for this CPU (-march=native), minus Intel AMX: its tile instructions fault
# (SIGILL) inside many virtual machines even where the CPU and kernel advertise them.
ifeq ($(shell uname -m),x86_64)
LLAMA_CPP_CFLAGS ?= -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
endif

.PHONY: demo test lint bench clean

demo: $(VENV)/.runtime
	$(VENV)/bin/localai demo

test: $(VENV)/.dev
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# llama-cpp-python ships only as source; build its wheel once per checkout with the flags above, showing
# the compile's progress (the full log stays in .wheels/).
$(LLAMA_WHEEL_STAMP): | $(VENV)/bin/python
	mkdir -p $(WHEELS)
	CFLAGS="$(LLAMA_CPP_CFLAGS)" CXXFLAGS="$(LLAMA_CPP_CFLAGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PY) scripts/build_progress.py $(WHEELS)/llama-cpp-python-build.log -- \
		$(PIP) wheel -v --no-deps --no-cache-dir --wheel-dir $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

# the locally built wheel goes in first, so that resolving the project never builds another one
$(VENV)/.runtime: pyproject.toml $(LLAMA_WHEEL_STAMP)
	$(PIP) install $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(LLAMA_WHEEL_STAMP)
	$(PIP) install $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) $(WHEELS) .pytest_cache .ruff_cache
