#!/usr/bin/env bash
# One-step setup: a Python >= 3.12 virtual environment in .venv with vsvitm and its runtime
# dependencies, a source plugin and vspipe configured. x265 and ffmpeg (to encode HEVC) are system
# packages: it says which to install, and installs them only when asked to.
#   scripts/setup.sh                     runtime (what a user who converts video needs)
#   scripts/setup.sh --dev               + training/test/preview tools (torch, onnx, pytest, hypothesis, vspreview)
#   scripts/setup.sh --system-packages   + x265 and ffmpeg through apt-get (as root, Debian/Ubuntu)
# The options combine, in any order.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
system_packages=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[train,test,preview]" ;;
    --system-packages) system_packages=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown option '$arg'; use --dev and/or --system-packages (see --help)" >&2; exit 2 ;;
  esac
done

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
missing=()
command -v x265 >/dev/null 2>&1 || missing+=(x265)
{ command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; } || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$system_packages" = 1 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "setup: --system-packages installs through apt-get, which is not here; install ${missing[*]} yourself (Homebrew: brew install x265 ffmpeg; Windows: winget install Gyan.FFmpeg)" >&2
      exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null 2>&1 || { echo "setup: --system-packages needs root or sudo for apt-get" >&2; exit 1; }
      sudo="sudo"
    fi
    echo "setup: installing ${missing[*]} with ${sudo:+sudo }apt-get" >&2
    ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}") >&2
  else
    echo "setup: ${missing[*]} not found (needed to encode HEVC: the demo, the encode tests). Install them:" >&2
    echo "         Debian/Ubuntu: sudo apt-get install ${missing[*]}   (or rerun: scripts/setup.sh --system-packages)" >&2
    echo "         macOS (Homebrew): brew install ${missing[*]}" >&2
    echo "         Windows (winget): winget install Gyan.FFmpeg   (its ffmpeg has libx265; the x265 CLI is not needed with ffmpeg)" >&2
  fi
fi
echo "setup: ready (.venv, $(.venv/bin/python --version))" >&2
