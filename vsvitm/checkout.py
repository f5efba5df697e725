"""Paths of the source checkout that the package runs from (an editable install, `pip install -e .`).

The tools (vsvitm-evaluate, vsvitm-benchmark, vsvitm-train-icam, ...) take their default inputs and
outputs from here: the sample clip, the data and run folders, and the shared HDR material beside the
checkout. Each of them can be given another path on its command line.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]          # the checkout: setup.cfg, samples/, data/, runs/
MODELS = REPO / "vsvitm" / "models"                 # the shipped graphs (package data)
SAMPLE = REPO / "samples" / "london_pan_320x240.mp4"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()   # the HDR material (docs/TRAINING.md)


def shared_data() -> Path | None:
    """The shared HDR material beside the checkout, or None where there is none."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None
