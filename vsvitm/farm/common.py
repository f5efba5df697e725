"""What the farm's parts share: its constants, errors, the probed clip's description, vspipe, file hashes."""
from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PROG = "vsvitm-farm"
DEFAULT_SEGMENT = 1920      # frames; a multiple of both chunk sizes (24 and 12): planned overhead 1.4 %
MAX_ATTEMPTS = 3            # a segment that fails this many times stops the run
STDERR_LINES = 20           # lines of a failed segment's stderr in the error message
FAULT_ENV = "VSVITM_FARM_FAULT"
MANIFEST = "manifest.json"
STREAM_EXT = (".hevc", ".265", ".h265")       # outputs that are the x265 CLI's elementary stream
SEGMENT_EXT = {"raw": "y4m", "x265": "hevc", "ffmpeg": "nut"}


class FarmError(Exception):
    """An error the farm reports as one line, with the exit status ``status``."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class SegmentError(RuntimeError):
    """A segment whose render failed: its index, frame range [start, end) and stderr tail."""

    def __init__(self, idx: int, start: int, end: int, reason: str, tail: list[str]):
        super().__init__(f"segment {idx} (frames {start}-{end - 1}): {reason}")
        self.idx, self.start, self.end, self.reason, self.tail = idx, start, end, reason, list(tail)

    def __reduce__(self):
        return SegmentError, (self.idx, self.start, self.end, self.reason, self.tail)


@dataclass(frozen=True)
class ClipInfo:
    """What ``vspipe --info`` says about a script's output 0."""
    frames: int
    width: int
    height: int
    fps_num: int
    fps_den: int
    format: str
    color_family: str


def vspipe_exe() -> str:
    """The vspipe beside this Python (the wheel's), else the one on PATH."""
    here = Path(sys.executable).with_name("vspipe")
    if here.exists():
        return str(here)
    found = shutil.which("vspipe")
    if not found:
        raise FarmError("vspipe not found (install VapourSynth into this environment: scripts/setup.sh)")
    return found


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, hex.

    path: the file.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
