#!/usr/bin/env python3
"""Evaluate vsvitm through the plugin itself.

Development-set mode (default): every ``*.npz`` in ``--data`` holds ``ldr`` (uint8 [T,H,W,3],
gamma-2.2 display-referred LDR) and ``hdr`` (float16 [T,H,W,3], linear, 1.0 = clip level), optionally
``fps``.  Each sequence becomes a VapourSynth clip (``vsvitm.vsnp.clip_from_array``), every method
(``vsvitm.ITM`` with different keyword arguments) is rendered back to numpy and scored:

  PU21-PSNR (all pixels), PU21-PSNR and log-L1 over over-exposed pixels (max LDR channel >= 0.95),
  temporal consistency, ColorVideoVDP JOD (when pycvvdp is installed) and seconds per frame.

A Markdown table goes to stdout; ``results.csv`` / ``results.md`` and a picture sheet per sequence
(``<seq>.png``, plus ``<seq>_zoom.png`` on the most over-exposed region) go to ``--out``.

``--ldr-videos DIR`` mode: no ground truth; run the methods on real LDR videos (read with OpenCV)
and only write picture sheets for review.

Examples::

    python scripts/evaluate.py --data data/devset --frames 24
    python scripts/evaluate.py --method 'no-expnorm:{"exposure_norm": false}' \\
        --method 'abl-a:{"models": "runs/abl_a/onnx"}'
    python scripts/evaluate.py --ldr-videos /work/shared/data/ldr-video --frames 48
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsvitm.training import metrics as M  # noqa: E402

DEFAULT_METHODS: list[tuple[str, dict]] = [
    ("f^-1(L)", {"mode": "linear"}),
    ("single frame", {"num_refs": 0, "mode": "icam"}),
    ("ICAM only", {"mode": "icam"}),
    ("default", {}),
    ("full", {"mode": "full"}),
]
LDR_VIDEO_METHODS = ("f^-1(L)", "single frame", "default")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v")

COLUMNS = ["sequence", "method", "pu21_psnr", "pu21_psnr_oe", "pu21_psnr_clue", "log_l1_oe", "tc", "cvvdp_jod",
           "s_per_frame", "oe_fraction", "frames", "note"]
HEADERS = {"sequence": "sequence", "method": "method", "pu21_psnr": "PU21-PSNR ↑",
           "pu21_psnr_oe": "PU21-PSNR OE ↑", "pu21_psnr_clue": "PU21-PSNR clue ↑", "log_l1_oe": "log-L1 OE ↓", "tc": "TC ↓",
           "cvvdp_jod": "JOD ↑", "s_per_frame": "s/frame", "oe_fraction": "OE %", "frames": "frames",
           "note": "note"}
METRIC_KEYS = ["pu21_psnr", "pu21_psnr_oe", "pu21_psnr_clue", "log_l1_oe", "tc", "cvvdp_jod", "s_per_frame"]


# ----------------------------------------------------------------------------- methods

def parse_method(spec: str) -> tuple[str, dict]:
    """``'NAME:{json kwargs}'`` (or just ``'NAME'`` for no kwargs) -> (name, kwargs)."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"--method {spec!r}: empty name")
    if not sep or not rest.strip():
        return name, {}
    kwargs = json.loads(rest)
    if not isinstance(kwargs, dict):
        raise ValueError(f"--method {spec!r}: kwargs must be a JSON object")
    return name, kwargs


def build_methods(extra: list[str] | None = None, only: list[str] | None = None) -> list[tuple[str, dict]]:
    methods = list(DEFAULT_METHODS)
    for spec in extra or []:
        name, kw = parse_method(spec)
        methods = [m for m in methods if m[0] != name] + [(name, kw)]
    if only is not None:
        methods = [m for m in methods if m[0] in only]
    return methods


def _short(exc: BaseException, limit: int = 120) -> str:
    msg = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_method_clip(ldr: np.ndarray, kwargs: dict, fps: tuple[int, int] = (24, 1)):
    """LDR uint8 [T,H,W,3] -> the vsvitm.ITM output clip for these kwargs."""
    import vsvitm
    from vsvitm.vsnp import clip_from_array

    clip = clip_from_array(ldr, fps=fps)
    return vsvitm.ITM(clip, **with_backend(kwargs))


BACKENDS = {"cpu": lambda v: v.Backend.ORT_CPU(), "cpu-fp16": lambda v: v.Backend.ORT_CPU(fp16=True),
            "cpu-int8": lambda v: v.Backend.ORT_CPU(int8=True),
            "cuda": lambda v: v.Backend.ORT_CUDA(), "cuda-fp16": lambda v: v.Backend.ORT_CUDA(fp16=True)}


def with_backend(kwargs: dict) -> dict:
    """Method kwargs are JSON: a backend is named ("cpu", "cpu-fp16", "cpu-int8", "cuda", "cuda-fp16")."""
    import vsvitm
    b = kwargs.get("backend")
    if b is None or not isinstance(b, str):
        return kwargs
    if b not in BACKENDS:
        raise ValueError(f"unknown backend {b!r}; use one of {', '.join(BACKENDS)}")
    return {**kwargs, "backend": BACKENDS[b](vsvitm)}


def run_method(ldr: np.ndarray, kwargs: dict, fps: tuple[int, int] = (24, 1),
               indices: list[int] | None = None) -> tuple[np.ndarray, float]:
    """Render a method; returns (linear float32 [N,H,W,3], seconds per rendered frame).

    ``indices`` renders only those frames (else all).  Node creation (model loading) is not timed.
    """
    from vsvitm.vsnp import frame_to_array

    out = make_method_clip(ldr, kwargs, fps)
    idx = list(range(out.num_frames)) if indices is None else list(indices)
    t0 = time.perf_counter()
    frames = [frame_to_array(out.get_frame(n)) for n in idx]
    dt = time.perf_counter() - t0
    arr = np.stack(frames).astype(np.float32)
    if arr.shape[1:3] != ldr.shape[1:3] or arr.shape[-1] != 3:
        raise ValueError(f"output shape {arr.shape} does not match input {ldr.shape}")
    return arr, dt / max(len(idx), 1)


# ----------------------------------------------------------------------------- data

def load_sequence(path: Path, frames: int | None = None) -> dict:
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
    if abs(fps - round(fps)) < 1e-6:
        return int(round(fps)), 1
    return int(round(fps * 1001)), 1001


def load_video(path: Path, frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video with OpenCV -> (uint8 RGB [T,H,W,3], fps)."""
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


# ----------------------------------------------------------------------------- metrics

def compute_metrics(pred: np.ndarray, gt: np.ndarray, ldr: np.ndarray, fps: float = 24.0,
                    threshold: float = 0.95, scale: float = 100.0, use_cvvdp: bool = True,
                    clue: np.ndarray | None = None) -> dict:
    """Scores of one prediction [T,H,W,3] against the truth; clue: bool [T,H,W], the clipped pixels that
    another frame within reach sees unclipped (camera-pan sequences carry it), scored on their own."""
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
            print(f"  cvvdp failed: {_short(exc)}", file=sys.stderr)
    return res


def evaluate_sequence(seq: dict, methods: list[tuple[str, dict]], threshold: float = 0.95,
                      scale: float = 100.0, use_cvvdp: bool = True, log=print) -> tuple[list[dict], dict]:
    """Run and score every method on one sequence -> (rows, {method name: prediction or None})."""
    rows, preds = [], {}
    for name, kwargs in methods:
        row = {"sequence": seq["name"], "method": name, "note": ""}
        try:
            pred, spf = run_method(seq["ldr"], kwargs, fps_fraction(seq["fps"]))
        except Exception as exc:
            row["note"] = f"n/a ({_short(exc)})"
            log(f"  {seq['name']} / {name}: {row['note']}")
            rows.append(row)
            preds[name] = None
            continue
        row.update(compute_metrics(pred, seq["hdr"], seq["ldr"], seq["fps"], threshold, scale, use_cvvdp,
                                   clue=seq.get("clue")))
        row["s_per_frame"] = spf
        preds[name] = pred
        clue_txt = "" if row.get("pu21_psnr_clue") is None else f"  clue {row['pu21_psnr_clue']:.2f}"
        log(f"  {seq['name']} / {name}: PU21-PSNR {row['pu21_psnr']:.2f}  OE {row['pu21_psnr_oe']:.2f}{clue_txt}  "
            f"{spf:.3f} s/frame")
        rows.append(row)
    return rows, preds


def per_frame_oe(seq: dict, preds: dict, threshold: float = 0.95, scale: float = 100.0) -> list[list]:
    """[sequence, frame, OE PU21-PSNR of each method] per frame (empty where a frame has no
    over-exposed pixel or a method failed): shows, e.g., whether a loss is on key frames or between them."""
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
    """One 'mean' row per method over the sequences where it ran (nan/None values skipped)."""
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


# ----------------------------------------------------------------------------- output

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
    lines = ["| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
             "|" + "|".join("---" if c in ("sequence", "method", "note") else "---:" for c in COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(c, r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c, "")) for c in COLUMNS})


def display_hdr(lin: np.ndarray, exposure: float = 0.25) -> np.ndarray:
    """Linear RGB (1.0 = clip level) -> uint8 RGB for viewing: x exposure, gamma 2.2, clipped."""
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
    """Labelled grid of uint8 RGB tiles -> uint8 RGB sheet."""
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


def _na_tile(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 64, np.uint8)


def pick_frame(ldr: np.ndarray, threshold: float = 0.95) -> int:
    """Frame with the most over-exposed pixels (middle frame when none is)."""
    counts = M.overexposed_mask(ldr, threshold).reshape(ldr.shape[0], -1).sum(1)
    return int(np.argmax(counts)) if counts.max() > 0 else ldr.shape[0] // 2


def zoom_box(mask: np.ndarray, frac: float = 0.25) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a box of ~frac x the frame size with the densest over-exposure, or None."""
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
    """Write ``<name>.png`` (and ``<name>_zoom.png``): input, each method, ground truth (exposure-reduced)."""
    h, w = ldr_frame.shape[:2]
    tag = f" #{frame_no}" if frame_no is not None else ""
    full = [(f"input LDR{tag}", ldr_frame)]
    for mname, img in preds.items():
        full.append((f"{mname} x{exposure:g}" if img is not None else f"{mname}: n/a",
                     display_hdr(img, exposure) if img is not None else _na_tile(h, w)))
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


# ----------------------------------------------------------------------------- modes

def evaluate_devset(args, methods) -> list[dict]:
    data = Path(args.data)
    files = sorted(data.glob("*.npz"))
    if args.sequences:
        want = [s.strip() for s in args.sequences.split(",") if s.strip()]
        files = [f for f in files if f.stem in want]
        missing = set(want) - {f.stem for f in files}
        if missing:
            print(f"warning: sequences not found in {data}: {', '.join(sorted(missing))}", file=sys.stderr)
    if not files:
        raise SystemExit(f"no .npz sequences in {data}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, per_frame = [], []
    for f in files:
        seq = load_sequence(f, args.frames)
        print(f"{seq['name']}: {seq['ldr'].shape[0]} frames {seq['ldr'].shape[2]}x{seq['ldr'].shape[1]}",
              file=sys.stderr)
        r, preds = evaluate_sequence(seq, methods, args.threshold, args.scale, not args.no_cvvdp,
                                     log=lambda s: print(s, file=sys.stderr))
        rows += r
        per_frame += per_frame_oe(seq, preds, args.threshold, args.scale)
        k = args.sheet_frame if args.sheet_frame is not None else pick_frame(seq["ldr"], args.threshold)
        k = int(np.clip(k, 0, seq["ldr"].shape[0] - 1))
        write_sheets(out, seq["name"], seq["ldr"][k], {n: (p[k] if p is not None else None) for n, p in preds.items()},
                     seq["hdr"][k], args.exposure, args.threshold, k)
    all_rows = rows + mean_rows(rows, [m[0] for m in methods])
    table = markdown_table(all_rows)
    print(table)
    write_csv(all_rows, out / "results.csv")
    with open(out / "per_frame_oe.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sequence", "frame", *[m[0] for m in methods]])
        w.writerows(per_frame)
    (out / "results.md").write_text(
        f"# vsvitm evaluation\n\ndata: `{data}`, frames: {args.frames or 'all'}, PU21 scale: 1.0 = "
        f"{args.scale:g} cd/m², over-exposed: max LDR channel ≥ {args.threshold}\n\n"
        + "\n".join(f"- {n}: `{json.dumps(kw)}`" for n, kw in methods) + "\n\n" + table + "\n")
    return all_rows


def review_ldr_videos(args, methods) -> list[Path]:
    src = Path(args.ldr_videos)
    files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if args.sequences:
        want = {s.strip() for s in args.sequences.split(",")}
        files = [f for f in files if f.stem in want]
    if not files:
        raise SystemExit(f"no videos in {src}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        try:
            ldr, fps = load_video(f, args.frames or 48)
        except OSError as exc:
            print(f"{f.name}: {exc}", file=sys.stderr)
            continue
        k = args.sheet_frame if args.sheet_frame is not None else pick_frame(ldr, args.threshold)
        k = int(np.clip(k, 0, ldr.shape[0] - 1))
        print(f"{f.stem}: {ldr.shape[0]} frames {ldr.shape[2]}x{ldr.shape[1]}, sheet frame {k}", file=sys.stderr)
        preds = {}
        for name, kwargs in methods:
            try:
                pred, spf = run_method(ldr, kwargs, fps_fraction(fps), indices=[k])
                preds[name] = pred[0]
                print(f"  {name}: {spf:.3f} s for frame {k}", file=sys.stderr)
            except Exception as exc:
                preds[name] = None
                print(f"  {name}: n/a ({_short(exc)})", file=sys.stderr)
        written += write_sheets(out, f.stem, ldr[k], preds, None, args.exposure, args.threshold, k)
    for p in written:
        print(p)
    return written


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/devset", help="folder of .npz sequences (default data/devset)")
    ap.add_argument("--out", default="runs/eval", help="output folder (default runs/eval)")
    ap.add_argument("--frames", type=int, default=None, help="use the first N frames only "
                    "(--ldr-videos default: 48)")
    ap.add_argument("--sequences", default=None, help="comma-separated sequence (file stem) names")
    ap.add_argument("--method", action="append", default=[], metavar="NAME:KWARGS_JSON",
                    help="extra row: vsvitm.ITM(clip, **KWARGS_JSON), e.g. "
                         "'no-expnorm:{\"exposure_norm\": false}'; repeatable; reusing a default name replaces it; "
                         "a backend by name: {\"backend\": \"cpu-fp16\"} (cpu, cpu-fp16, cpu-int8, cuda, cuda-fp16)")
    ap.add_argument("--only", default=None, help="comma-separated method names to run (default: all)")
    ap.add_argument("--ldr-videos", default=None, metavar="DIR",
                    help="review mode: run on real LDR videos (dir or file), write picture sheets only")
    ap.add_argument("--no-cvvdp", action="store_true", help="skip ColorVideoVDP (slow on the CPU)")
    ap.add_argument("--scale", type=float, default=100.0, help="cd/m² of 1.0 for PU21/cvvdp (default 100)")
    ap.add_argument("--threshold", type=float, default=0.95, help="over-exposure threshold on the LDR (0.95)")
    ap.add_argument("--exposure", type=float, default=0.25, help="exposure of HDR tiles in sheets (0.25)")
    ap.add_argument("--sheet-frame", type=int, default=None,
                    help="frame for the picture sheet (default: the most over-exposed one)")
    return ap


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    methods = build_methods(args.method, only)
    if args.ldr_videos:
        if only is None:
            extra = {parse_method(s)[0] for s in args.method}
            methods = [m for m in methods if m[0] in LDR_VIDEO_METHODS or m[0] in extra]
        return review_ldr_videos(args, methods)
    return evaluate_devset(args, methods)


def main_patched(doc: str, add_args, install, argv: list[str] | None = None):
    """For experiment scripts that change the plugin and then run this one:
    `script.py OWN-ARGS -- EVALUATE-ARGS`. add_args(parser) declares OWN-ARGS; install(args) patches."""
    argv = sys.argv[1:] if argv is None else list(argv)
    own, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    install(ap.parse_args(own))
    return main(rest)


if __name__ == "__main__":
    main()
