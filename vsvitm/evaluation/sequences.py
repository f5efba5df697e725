"""Evaluation inputs: LDR/HDR sequences saved as .npz (vsvitm-make-devset, vsvitm-make-pans) and LDR videos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v")


def load_sequence(path: Path, frames: int | None = None) -> dict:
    """{"name", "ldr" uint8 [T,H,W,3], "hdr" float32 [T,H,W,3], "fps", "clue" bool [T,H,W] or None} of a .npz.

    path: the .npz (ldr uint8, uint16 or float in [0, 1]; hdr linear, 1.0 = clip level; optionally fps, clue).
    frames: keep the first N frames only (None: all).
    """
    with np.load(path) as z:
        ldr = np.asarray(z["ldr"])
        hdr = np.asarray(z["hdr"]).astype(np.float32)
        fps = float(z["fps"]) if "fps" in z.files else 24.0
        clue = np.asarray(z["clue"], bool) if "clue" in z.files else None
    if frames:
        ldr, hdr = ldr[:frames], hdr[:frames]
        clue = None if clue is None else clue[:frames]
    if ldr.dtype == np.uint16:
        ldr = np.round(ldr / 257.0).astype(np.uint8)
    elif ldr.dtype != np.uint8:  # float in [0, 1]
        ldr = np.clip(np.round(ldr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if ldr.shape != hdr.shape or ldr.ndim != 4 or ldr.shape[-1] != 3:
        raise ValueError(f"{path}: ldr {ldr.shape} and hdr {hdr.shape} must both be [T,H,W,3]")
    return {"name": path.stem, "ldr": ldr, "hdr": hdr, "fps": fps, "clue": clue}


def fps_fraction(fps: float) -> tuple[int, int]:
    """A frame rate as VapourSynth's (numerator, denominator): whole, or NTSC-style over 1001.

    fps: frames per second.
    """
    if abs(fps - round(fps)) < 1e-6:
        return int(round(fps)), 1
    return int(round(fps * 1001)), 1001


def load_video(path: Path, frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video with OpenCV -> (uint8 RGB [T,H,W,3], fps).

    path: the video file.
    frames: read at most this many frames (None: all).
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 24.0
    out = []
    try:
        while frames is None or len(out) < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not out:
        raise OSError(f"no frames decoded from {path}")
    return np.stack(out), float(fps)
