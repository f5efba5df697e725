"""Picture sheets for review: the LDR input, each method and the truth side by side, and a zoom on the
most over-exposed region."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..training import metrics as M


def display_hdr(lin: np.ndarray, exposure: float = 0.25) -> np.ndarray:
    """Linear RGB (1.0 = clip level) -> uint8 RGB for viewing: x exposure, gamma 2.2, clipped.

    lin: linear RGB.
    exposure: factor applied before the display curve.
    """
    v = np.clip(np.nan_to_num(lin.astype(np.float32)) * exposure, 0.0, 1.0) ** (1 / 2.2)
    return np.round(v * 255.0).astype(np.uint8)


def _label(img_rgb: np.ndarray, text: str) -> np.ndarray:
    """Tile with a black caption strip above it (so the caption never hides picture content)."""
    w = img_rgb.shape[1]
    fs = max(0.35, min(0.8, w / 700))
    th = 1
    (tw, tht), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, th)
    while tw > w - 8 and fs > 0.3:
        fs *= 0.9
        (tw, tht), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, th)
    strip = np.zeros((tht + base + 8, w, 3), np.uint8)
    cv2.putText(strip, text, (4, tht + 4), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), th, cv2.LINE_AA)
    return np.concatenate([strip, img_rgb], axis=0)


def _fit(img: np.ndarray, max_w: int) -> np.ndarray:
    h, w = img.shape[:2]
    if w > max_w:
        img = cv2.resize(img, (max_w, max(1, round(h * max_w / w))), interpolation=cv2.INTER_AREA)
    elif w < 160:  # tiny test frames: enlarge so labels stay readable
        f = int(math.ceil(160 / w))
        img = cv2.resize(img, (w * f, h * f), interpolation=cv2.INTER_NEAREST)
    return img


def make_sheet(tiles: list[tuple[str, np.ndarray]], cols: int = 3, max_tile_w: int = 640) -> np.ndarray:
    """Labelled grid of uint8 RGB tiles -> uint8 RGB sheet.

    tiles: (caption, picture) pairs, in reading order.
    cols: tiles per row.
    max_tile_w: wider tiles are scaled down to this width.
    """
    fitted = [_fit(img, max_tile_w) for _, img in tiles]
    h0, w0 = fitted[0].shape[:2]
    labelled = [_label(img if img.shape[:2] == (h0, w0) else cv2.resize(img, (w0, h0), interpolation=cv2.INTER_AREA), t)
                for (t, _), img in zip(tiles, fitted)]
    th, tw = labelled[0].shape[:2]
    cols = max(1, min(cols, len(tiles)))
    rows = int(math.ceil(len(tiles) / cols))
    pad = 4
    sheet = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 32, np.uint8)
    for i, img in enumerate(labelled):
        r, c = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        sheet[y:y + img.shape[0], x:x + img.shape[1]] = img
    return sheet


def pick_frame(ldr: np.ndarray, threshold: float = 0.95) -> int:
    """Frame with the most over-exposed pixels (middle frame when none is).

    ldr: uint8 [T,H,W,3].
    threshold: over-exposure threshold on the largest channel.
    """
    counts = M.overexposed_mask(ldr, threshold).reshape(ldr.shape[0], -1).sum(1)
    return int(np.argmax(counts)) if counts.max() > 0 else ldr.shape[0] // 2


def zoom_box(mask: np.ndarray, frac: float = 0.25) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a box of ~frac x the frame size with the densest over-exposure, or None.

    mask: bool [H,W], the over-exposed pixels.
    frac: the box's side as a share of the frame's.
    """
    if not mask.any():
        return None
    h, w = mask.shape
    bh, bw = max(8, int(h * frac)), max(8, int(w * frac))
    bh, bw = min(bh, h), min(bw, w)
    dens = cv2.boxFilter(mask.astype(np.float32), -1, (bw, bh), normalize=True, borderType=cv2.BORDER_CONSTANT)
    cy, cx = np.unravel_index(int(np.argmax(dens)), dens.shape)
    y0 = int(np.clip(cy - bh // 2, 0, h - bh))
    x0 = int(np.clip(cx - bw // 2, 0, w - bw))
    return y0, y0 + bh, x0, x0 + bw


def write_sheets(out_dir: Path, name: str, ldr_frame: np.ndarray, preds: dict[str, np.ndarray | None],
                 gt_frame: np.ndarray | None, exposure: float = 0.25, threshold: float = 0.95,
                 frame_no: int | None = None) -> list[Path]:
    """Write ``<name>.png`` (and ``<name>_zoom.png``): input, each method, ground truth (exposure-reduced).

    out_dir: folder to write into.
    name: file stem.
    ldr_frame: the input frame, uint8 [H,W,3].
    preds: {method name: its linear frame, or None where it failed}.
    gt_frame: the linear truth, or None (no ground truth).
    exposure: factor of the HDR tiles (display_hdr).
    threshold: over-exposure threshold (the zoom's region).
    frame_no: the frame's number, for the caption.
    """
    h, w = ldr_frame.shape[:2]
    tag = f" #{frame_no}" if frame_no is not None else ""
    full = [(f"input LDR{tag}", ldr_frame)]
    for mname, img in preds.items():
        full.append((f"{mname} x{exposure:g}" if img is not None else f"{mname}: n/a",
                     display_hdr(img, exposure) if img is not None else np.full((h, w, 3), 64, np.uint8)))
    if gt_frame is not None:
        full.append((f"ground truth x{exposure:g}", display_hdr(gt_frame, exposure)))
    cols = 3 if len(full) <= 6 else 4
    paths = [out_dir / f"{name}.png"]
    cv2.imwrite(str(paths[0]), cv2.cvtColor(make_sheet(full, cols), cv2.COLOR_RGB2BGR))
    box = zoom_box(M.overexposed_mask(ldr_frame, threshold))
    if box is not None:
        y0, y1, x0, x1 = box
        crops = [(t, img[y0:y1, x0:x1]) for t, img in full]
        paths.append(out_dir / f"{name}_zoom.png")
        cv2.imwrite(str(paths[1]), cv2.cvtColor(make_sheet(crops, cols, max_tile_w=480), cv2.COLOR_RGB2BGR))
    return paths
