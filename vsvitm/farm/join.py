"""Joining segments: y4m frames under one header, x265 elementary streams, or ffmpeg's concat demuxer."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from .common import FarmError


def y4m_layout(path: Path) -> tuple[int, int]:
    """(header length including its newline, bytes of one frame's pixels) of a y4m file.

    path: the file.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    nl = head.find(b"\n")
    if not head.startswith(b"YUV4MPEG2 ") or nl < 0:
        raise ValueError(f"{path} is not y4m")
    tokens = head[:nl].decode().split()[1:]
    w = h = 0
    cs = "420jpeg"
    for tok in tokens:
        if tok[0] == "W":
            w = int(tok[1:])
        elif tok[0] == "H":
            h = int(tok[1:])
        elif tok[0] == "C":
            cs = tok[1:]
    m = re.match(r"(mono|420|422|444)", cs)
    kind = m.group(1) if m else "420"
    b = re.search(r"p(\d+)$", cs)
    bits = int(b.group(1)) if b else 8
    bps = 2 if bits > 8 else 1
    if kind == "mono":
        planes = w * h
    else:
        sub = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[kind]
        planes = w * h + 2 * (-(-w // sub[0])) * (-(-h // sub[1]))
    return nl + 1, planes * bps


def join_raw(files: list[Path], out: Path, num_frames: int) -> None:
    """Concatenate y4m segments under one header (the first segment's, with the whole length).

    files: the segment files in order.
    out: the y4m to write (temporary name, then renamed).
    num_frames: frames in the whole clip (the header's XLENGTH).
    """
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as dst:
            for i, f in enumerate(files):
                hlen, _ = y4m_layout(f)
                with open(f, "rb") as src:
                    header = src.read(hlen)
                    if i == 0:
                        tokens = [t if not t.startswith(b"XLENGTH=") else b"XLENGTH=%d" % num_frames
                                  for t in header.rstrip(b"\n").split(b" ")]
                        dst.write(b" ".join(tokens) + b"\n")
                    shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def join_hevc(files: list[Path], out: Path) -> None:
    """Concatenate HEVC elementary streams (each starts with an IDR and its parameter sets).

    files: the segment files in order.
    out: the stream to write (temporary name, then renamed).
    """
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as dst:
            for f in files:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def join_container(files: list[Path], out: Path, ffmpeg: str) -> None:
    """Join NUT segments into OUT's container with ffmpeg's concat demuxer, without re-encoding
    (presentation times carry over; colour description in the container).

    files: the segment files in order.
    out: the file to write (temporary name with the same extension, then renamed).
    ffmpeg: the ffmpeg executable.
    """
    listing = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.txt")
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.partial{out.suffix}")
    try:
        listing.write_text("ffconcat version 1.0\n" + "".join(
            "file '" + str(f).replace("'", "'\\''") + "'\n" for f in files))
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
               "-i", str(listing), "-map", "0:v", "-c", "copy", "-color_primaries", "bt2020",
               "-color_trc", "smpte2084", "-colorspace", "bt2020nc", "-color_range", "tv", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            msg = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise FarmError(f"ffmpeg could not mux {out.name}: {msg}", 1)
        os.replace(tmp, out)
    finally:
        listing.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def x265_to_ffmpeg(tokens: list[str]) -> tuple[list[str], list[str]]:
    """x265 CLI arguments as ffmpeg libx265 options: (ffmpeg options for preset, tune, crf and qp;
    ``name=value`` entries for -x265-params).

    tokens: the x265 arguments, e.g. ["--preset", "slow", "--crf", "18", "--no-sao"].
    """
    opts, params = [], []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise FarmError(f"--x265: expected an option like --crf, got {tok!r}")
        name, eq, value = tok[2:].partition("=")
        if not eq:
            value = None
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value, i = tokens[i + 1], i + 1
        if name in ("preset", "tune", "crf", "qp") and value is not None:
            opts += [f"-{name}", value]
        else:
            params.append(f"{name}={1 if value is None else value}")
        i += 1
    return opts, params
