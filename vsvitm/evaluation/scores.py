"""Scores of a rendered method against the truth, their means, and the results table (Markdown, CSV)."""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np

from ..training import metrics as M
from .methods import short_error

COLUMNS = ["sequence", "method", "pu21_psnr", "pu21_psnr_oe", "pu21_psnr_clue", "log_l1_oe", "tc", "cvvdp_jod",
           "s_per_frame", "oe_fraction", "frames", "note"]
HEADERS = {"sequence": "sequence", "method": "method", "pu21_psnr": "PU21-PSNR ↑",
           "pu21_psnr_oe": "PU21-PSNR OE ↑", "pu21_psnr_clue": "PU21-PSNR clue ↑", "log_l1_oe": "log-L1 OE ↓", "tc": "TC ↓",
           "cvvdp_jod": "JOD ↑", "s_per_frame": "s/frame", "oe_fraction": "OE %", "frames": "frames",
           "note": "note"}
METRIC_KEYS = ["pu21_psnr", "pu21_psnr_oe", "pu21_psnr_clue", "log_l1_oe", "tc", "cvvdp_jod", "s_per_frame"]


def compute_metrics(pred: np.ndarray, gt: np.ndarray, ldr: np.ndarray, fps: float = 24.0,
                    threshold: float = 0.95, scale: float = 100.0, use_cvvdp: bool = True,
                    clue: np.ndarray | None = None) -> dict:
    """Scores of one prediction [T,H,W,3] against the truth.

    pred: the method's linear output.
    gt: the linear truth (1.0 = clip level).
    ldr: the LDR input, uint8 (its over-exposed pixels are scored on their own).
    fps: frame rate (ColorVideoVDP).
    threshold: over-exposure threshold on the LDR's largest channel.
    scale: cd/m² of 1.0 (PU21, ColorVideoVDP).
    use_cvvdp: also score ColorVideoVDP JOD (slow on the CPU).
    clue: bool [T,H,W], the clipped pixels that another frame within reach sees unclipped (camera-pan
        sequences carry it), scored on their own; None: no such score.
    """
    mask = M.overexposed_mask(ldr, threshold)
    res = {
        "pu21_psnr": M.pu21_psnr(pred, gt, scale=scale),
        "pu21_psnr_oe": M.pu21_psnr(pred, gt, mask=mask, scale=scale),
        "pu21_psnr_clue": None if clue is None else M.pu21_psnr(pred, gt, mask=clue, scale=scale),
        "log_l1_oe": M.log_l1(pred, gt, mask=mask),
        "tc": M.temporal_consistency(pred, gt, scale=scale),
        "cvvdp_jod": None,
        "oe_fraction": 100.0 * float(mask.mean()),
        "frames": int(pred.shape[0]),
    }
    if use_cvvdp:
        try:
            res["cvvdp_jod"] = M.cvvdp_jod(pred, gt, fps=fps, scale=scale)
        except Exception as exc:  # a metric failure must not sink the run
            print(f"  cvvdp failed: {short_error(exc)}", file=sys.stderr)
    return res


def per_frame_oe(seq: dict, preds: dict, threshold: float = 0.95, scale: float = 100.0) -> list[list]:
    """[sequence, frame, OE PU21-PSNR of each method] per frame (empty where a frame has no
    over-exposed pixel or a method failed): shows, e.g., whether a loss is on key frames or between them.

    seq: the sequence (sequences.load_sequence).
    preds: {method name: prediction [T,H,W,3] or None}.
    threshold: over-exposure threshold on the LDR.
    scale: cd/m² of 1.0 (PU21).
    """
    mask = M.overexposed_mask(seq["ldr"], threshold)
    out = []
    for i in range(seq["ldr"].shape[0]):
        vals = []
        for p in preds.values():
            v = None if p is None or not mask[i].any() else M.pu21_psnr(p[i:i + 1], seq["hdr"][i:i + 1], mask=mask[i:i + 1], scale=scale)
            vals.append("" if v is None else f"{v:.3f}")
        out.append([seq["name"], i, *vals])
    return out


def _finite_mean(vals):
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def mean_rows(rows: list[dict], methods: list[str]) -> list[dict]:
    """One 'mean' row per method over the sequences where it ran (nan/None values skipped).

    rows: the per-sequence rows.
    methods: the method names, in table order.
    """
    out = []
    for name in methods:
        mine = [r for r in rows if r["method"] == name]
        ok = [r for r in mine if not r.get("note")]
        row = {"sequence": "mean", "method": name, "note": ""}
        if not ok:
            notes = {r["note"] for r in mine if r.get("note")}
            row["note"] = sorted(notes)[0] if notes else "n/a"
        else:
            for k in METRIC_KEYS + ["oe_fraction"]:
                row[k] = _finite_mean([r.get(k) for r in ok])
            row["frames"] = sum(r.get("frames", 0) for r in ok)
            if len(ok) < len(mine):
                row["note"] = f"{len(mine) - len(ok)} sequence(s) n/a"
        out.append(row)
    return out


def _fmt(key: str, v) -> str:
    if v is None or v == "":
        return "" if key == "note" else "n/a"
    if isinstance(v, str):
        return v.replace("|", "/")
    if isinstance(v, (int, np.integer)):
        return str(v)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf"
    return {"log_l1_oe": f"{v:.4f}", "tc": f"{v:.3f}", "s_per_frame": f"{v:.3f}",
            "oe_fraction": f"{v:.2f}"}.get(key, f"{v:.2f}")


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (COLUMNS).

    rows: result rows.
    """
    lines = ["| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
             "|" + "|".join("---" if c in ("sequence", "method", "note") else "---:" for c in COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(c, r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    """The rows as CSV (COLUMNS; None as empty).

    rows: result rows.
    path: the file to write.
    """
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c, "")) for c in COLUMNS})
