"""Evaluate vsvitm through the plugin itself (vsvitm-evaluate).

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

    vsvitm-evaluate --data data/devset --frames 24
    vsvitm-evaluate --method 'no-expnorm:{"tuning": {"exposure_norm": false}}' \\
        --method 'abl-a:{"models": "runs/abl_a/onnx"}'
    vsvitm-evaluate --ldr-videos /work/shared/data/ldr-video --frames 48
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from .methods import LDR_VIDEO_METHODS, build_methods, parse_method, run_method, short_error
from .scores import compute_metrics, markdown_table, mean_rows, per_frame_oe, write_csv
from .sequences import VIDEO_EXTS, fps_fraction, load_sequence, load_video
from .sheets import pick_frame, write_sheets


def evaluate_sequence(seq: dict, methods: list[tuple[str, dict]], threshold: float = 0.95,
                      scale: float = 100.0, use_cvvdp: bool = True, log=print) -> tuple[list[dict], dict]:
    """Run and score every method on one sequence -> (rows, {method name: prediction or None}).

    seq: the sequence (sequences.load_sequence).
    methods: (name, ITM keyword arguments) pairs.
    threshold: over-exposure threshold on the LDR.
    scale: cd/m² of 1.0 (PU21, ColorVideoVDP).
    use_cvvdp: also score ColorVideoVDP JOD.
    log: where progress lines go.
    """
    rows, preds = [], {}
    for name, kwargs in methods:
        row = {"sequence": seq["name"], "method": name, "note": ""}
        try:
            pred, spf = run_method(seq["ldr"], kwargs, fps_fraction(seq["fps"]))
        except Exception as exc:
            row["note"] = f"n/a ({short_error(exc)})"
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


def evaluate_devset(args, methods) -> list[dict]:
    """Score every method on every .npz sequence in args.data; write results.csv/.md, per_frame_oe.csv
    and a picture sheet per sequence to args.out; return all rows with the means.

    args: the parsed command line (build_parser).
    methods: (name, ITM keyword arguments) pairs.
    """
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
    """Picture sheets of every method on real LDR videos (no ground truth); return the files written.

    args: the parsed command line (build_parser).
    methods: (name, ITM keyword arguments) pairs.
    """
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
                print(f"  {name}: n/a ({short_error(exc)})", file=sys.stderr)
        written += write_sheets(out, f.stem, ldr[k], preds, None, args.exposure, args.threshold, k)
    for p in written:
        print(p)
    return written


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-evaluate's command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/devset", help="folder of .npz sequences (default data/devset)")
    ap.add_argument("--out", default="runs/eval", help="output folder (default runs/eval)")
    ap.add_argument("--frames", type=int, default=None, help="use the first N frames only "
                    "(--ldr-videos default: 48)")
    ap.add_argument("--sequences", default=None, help="comma-separated sequence (file stem) names")
    ap.add_argument("--method", action="append", default=[], metavar="NAME:KWARGS_JSON",
                    help="extra row: vsvitm.ITM(clip, **KWARGS_JSON), e.g. "
                         "'no-expnorm:{\"tuning\": {\"exposure_norm\": false}}'; repeatable; reusing a default name replaces it; "
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


def run(argv: list[str] | None = None) -> list:
    """vsvitm-evaluate on these arguments: the result rows (or, with --ldr-videos, the sheets written).

    argv: command-line arguments (None: sys.argv[1:]).
    """
    args = build_parser().parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    methods = build_methods(args.method, only)
    if args.ldr_videos:
        if only is None:
            extra = {parse_method(s)[0] for s in args.method}
            methods = [m for m in methods if m[0] in LDR_VIDEO_METHODS or m[0] in extra]
        return review_ldr_videos(args, methods)
    return evaluate_devset(args, methods)


def main(argv: list[str] | None = None) -> int:
    """Entry point of vsvitm-evaluate.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
