#!/usr/bin/env bash
# One-step setup: a Python >= 3.12 virtual environment in .venv with vsvitm and its runtime
# dependencies, a source plugin, vspipe configured, and x265/ffmpeg when apt can install them.
#   scripts/setup.sh            runtime (what a user who converts video needs)
#   scripts/setup.sh --dev      + training/test tools (torch, onnx, pytest, hypothesis)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[train,test]"

pick_python() {
  for c in "${PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then echo "$c"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    v=$(pyenv versions --bare | grep -E '^3\.1[2-9]' | sort -V | tail -1 || true)
    [ -n "$v" ] && { echo "$(pyenv root)/versions/$v/bin/python3"; return; }
  fi
  echo "vsvitm needs Python >= 3.12 (VapourSynth R81 wheels). Install one (python.org, your distro, 'pyenv install 3.12', or 'uv python install 3.12') and rerun, or set PYTHON=/path/to/python3.12" >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  echo "setup: creating .venv with $($py --version)" >&2
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >&2
.venv/bin/python -m pip install -q -e ".${extras}" vapoursynth-bestsource >&2
# vspipe from the wheel needs this once per Python installation (writes the user's vapoursynth.toml)
.venv/bin/vspipe --version >/dev/null 2>&1 || .venv/bin/vapoursynth config >&2
.venv/bin/vspipe --version >/dev/null
if ! command -v x265 >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq x265 ffmpeg) >&2
  else
    echo "setup: x265/ffmpeg not found; install them (e.g. sudo apt-get install x265 ffmpeg) to encode HEVC" >&2
  fi
fi
echo "setup: ready (.venv, $(.venv/bin/python --version))" >&2
