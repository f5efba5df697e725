"""Export trained checkpoints to the ONNX graphs the plugin runs, and check ORT against torch (vsvitm-export).

    vsvitm-export --icam runs/icam/last.pt --fcpm runs/fcpm/last.pt --out vsvitm/models
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..checkout import MODELS
from .export import export_fcpm, export_icam, source_checkpoint, training_args
from .fcpm_net import FCPM, FCPMConfig
from .icam_net import ICAM, ICAMConfig


def load(path, cls, cfg_cls):
    """(network in eval mode, the checkpoint's dict) of a training checkpoint.

    path: the checkpoint (.pt).
    cls: the network class (ICAM, FCPM).
    cfg_cls: its config class.
    """
    st = torch.load(path, map_location="cpu", weights_only=False)
    m = cls(cfg_cls.from_dict(st["config"]) if hasattr(cfg_cls, "from_dict") else cfg_cls(**st["config"]))
    m.load_state_dict(st["model"])
    return m.eval(), st


def steps(st: dict) -> dict:
    """Manifest fields of the steps trained; a soup has no step count of its own: its manifest lists each
    ingredient's instead.

    st: the checkpoint's dict.
    """
    return {} if st.get("soup") else {"trained_steps": st["step"]}


def provenance(path: str, st: dict, name: str, note: str | None) -> dict:
    """Manifest fields naming the weights: for a checkpoint rebuilt from shipped graphs
    (vsvitm-checkpoint-from-onnx) the training checkpoint those graphs came from, not the rebuild.

    path: the checkpoint given.
    st: its dict.
    name: "icam" or "fcpm".
    note: --note (why the graphs were made again), or None.
    """
    meta = {"checkpoint": source_checkpoint(st, name) or Path(path).as_posix()}
    if st.get("soup"):  # vsvitm-soup: the weights are a mean of these checkpoints
        meta["soup"] = st["soup"]
    args = training_args(path, st)
    if args is not None:
        meta["training_args"] = args
    if note:
        meta["reexported"] = note
    return meta


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-export's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--icam", help="ICAM checkpoint")
    ap.add_argument("--fcpm", help="FCPM checkpoint")
    ap.add_argument("--out", default=str(MODELS))
    ap.add_argument("--no-fp16", action="store_true")
    ap.add_argument("--evidence-gate", type=float,
                    help="FCPM merge: lower the fallback where reference evidence backs the keys, by this "
                         "strength (not learned; default: the checkpoint's, 0 = off). Needs ICAM graphs "
                         "from this version, which output the evidence")
    ap.add_argument("--note", help="re-export only: why the graphs were made again (kept in the manifests)")
    ap.add_argument("--homography-preflow", action="store_true",
                    help="the ICAM was trained on pre-flows started from a feature homography (vsvitm-train-icam "
                         "--homography-preflow): icam.json says so and the plugin makes its key -> reference "
                         "pre-flows the same way (flow.HomographyDIS)")
    ap.add_argument("--clue-transfer", metavar="W0[,LEVEL[,SPREAD]]",
                    help="ICAM decode: raise the key's clipped channels towards the clue path's mean where its "
                         "weight sum passes W0, the mean passes LEVEL x the clip level (default 1.05) and the "
                         "references' spread of log radiance is below SPREAD (default 0: not gated); not learned "
                         "(docs/TRAINING.md gives the shipped values). 0 = off. Default: the "
                         "checkpoint's (off for training checkpoints)")
    return ap


def clue_transfer(ap, a) -> list[float] | None:
    """--clue-transfer as [W0, LEVEL, SPREAD] (one to three values), or None; argparse's error on bad input.

    ap: the parser (for its errors).
    a: the parsed command line.
    """
    if a.clue_transfer is None:
        return None
    if not a.icam:
        ap.error("--clue-transfer describes an ICAM: give --icam")
    try:
        transfer = [float(x) for x in a.clue_transfer.split(",")]
    except ValueError:
        transfer = []
    if (not 1 <= len(transfer) <= 3 or transfer[0] < 0 or (len(transfer) >= 2 and transfer[1] <= 0)
            or (len(transfer) == 3 and transfer[2] < 0)):
        ap.error("--clue-transfer takes W0 >= 0, optionally LEVEL > 0 and SPREAD >= 0, e.g. 0.25,1.05,0.1; "
                 f"got {a.clue_transfer!r}")
    return transfer


def export_icam_checkpoint(ap, a, out: Path, transfer: list[float] | None) -> None:
    """Export --icam to `out`, with the clue transfer and pre-flow start asked for.

    ap: the parser (for its errors).
    a: the parsed command line.
    out: the model folder.
    transfer: clue_transfer's values, or None.
    """
    m, st = load(a.icam, ICAM, ICAMConfig)
    if transfer:
        if not m.cfg.clue:
            ap.error("--clue-transfer needs an ICAM with the clue path (this one was trained with --no-clue)")
        m.cfg.clue_transfer = transfer[0]
        if len(transfer) >= 2:
            m.cfg.clue_transfer_level = transfer[1]
        if len(transfer) == 3:
            m.cfg.clue_transfer_spread = transfer[2]
    # a checkpoint rebuilt from such graphs (vsvitm-checkpoint-from-onnx) says so itself
    homography = a.homography_preflow or st.get("preflow_start") == "homography"
    start = {"preflow_start": "homography"} if homography else {}
    ps = export_icam(m, out, fp16=not a.no_fp16, meta={**steps(st), "exposure_norm": st.get("exposure_norm", True),
                                                      **start, **provenance(a.icam, st, "icam", a.note)})
    print("ICAM:", ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in ps))


def main(argv=None):
    """Entry point of vsvitm-export.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.homography_preflow and not a.icam:
        ap.error("--homography-preflow describes an ICAM: give --icam")
    transfer = clue_transfer(ap, a)
    out = Path(a.out)
    if a.icam:
        export_icam_checkpoint(ap, a, out, transfer)
    if a.fcpm:
        m, st = load(a.fcpm, FCPM, FCPMConfig)
        if a.evidence_gate is not None:
            m.cfg.evidence_gate = a.evidence_gate
        ps = export_fcpm(m, out, fp16=not a.no_fp16, meta={**steps(st),
                                                          **provenance(a.fcpm, st, "fcpm", a.note)})
        print("FCPM:", ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in ps))
    # int8 variants were made from the graphs just replaced: remove them (the engine would refuse them)
    stale = [p for p in out.glob("*_int8.onnx") if (out / p.name.replace("_int8", "")).exists()
             and ((a.icam and p.name.startswith("icam")) or (a.fcpm and p.name.startswith("fcpm")))]
    for p in stale:
        p.unlink()
    if stale:
        print(f"removed {', '.join(p.name for p in stale)}: make them again with vsvitm-quantize --models {out}")


if __name__ == "__main__":
    main()
