"""Train FCPM (stage 2) on synthetic video, with the frozen ICAM (trained first) making key results
(vsvitm-train-fcpm).

Resumable (re-run the same command), seeded, logs to OUT/log.txt. Example (the shipped weights):
    vsvitm-train-fcpm --icam runs/icam/last.pt --out runs/fcpm --steps 800
Losses: alpha-weighted log-L1 on every frame of the run, plus a temporal term (frame-to-frame change
of the output against that of the ground truth). Ablations: --no-forward --no-backward.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from . import batch_loader, load_net, load_teacher, to_device
from .fcpm_data import FCPMBatches, run_fcpm
from .fcpm_net import EPS, FCPM, FCPMConfig
from .icam_net import ICAM, ICAMConfig
from .losses import log_l1
from .nets_common import input_linear
from .prune import fcpm_groups, fcpm_widths, prune
from .runs import Progress, Run, add_run_args, distill_term, log_line, optimise, new_model, parse_run_args, save_last, start_run


def temporal_l1(y: torch.Tensor, hdr: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """|d/dt log Y - d/dt log H| where both frames are over-exposed ([T, B, C, H, W]).

    y: the output, linear.
    hdr: the truth, linear.
    alpha: the over-exposure weight.
    """
    ly, lh = torch.log(y + EPS), torch.log(hdr.clamp_min(0) + EPS)
    w = alpha[1:] * alpha[:-1]
    d = ((ly[1:] - ly[:-1]) - (lh[1:] - lh[:-1])).abs() * w
    return d.sum() / (3 * w.sum()).clamp_min(1.0)


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-train-fcpm's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap, out="runs/fcpm", steps=800, batch=2, lr=5e-4, ckpt_every=50)
    ap.add_argument("--icam", default="runs/icam/last.pt", help="trained ICAM checkpoint (frozen)")
    ap.add_argument("--run", type=int, default=6, help="frames per training chunk")
    ap.add_argument("--temporal-weight", type=float, default=0.5)
    ap.add_argument("--init", help="start from these FCPM weights (a checkpoint .pt), e.g. for short ablation runs")
    ap.add_argument("--no-forward", action="store_true")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--no-fallback", action="store_true",
                    help="merge only key results (the paper), without f^-1(L) of the frame as a candidate")
    ap.add_argument("--flow-cue", action="store_true",
                    help="the mask net also sees each key's pre-flow magnitude (tried, not shipped: BENCHMARKS.md)")
    ap.add_argument("--agree-cue", action="store_true",
                    help="the mask net also sees how far each warped key result is from the keys' mean")
    ap.add_argument("--evidence-gate", type=float, default=0.0,
                    help="train with the merge's evidence gate on (not learned; the shipped merge uses it at "
                         "export: vsvitm-export --evidence-gate)")
    ap.add_argument("--bad-flow", type=float, default=0.0,
                    help="probability of perturbing a key's pre-flow (teaches the merge to reject misaligned keys)")
    ap.add_argument("--init-correction", metavar="CKPT",
                    help="start the merge's flow-correction net from this FCPM checkpoint (same --corr; its width does not "
                         "depend on --hidden/--mask-ch), the rest from scratch: for networks of another width")
    ap.add_argument("--hidden", type=int, default=FCPMConfig.hidden,
                    help=f"recurrent state channels (default {FCPMConfig.hidden}, the shipped width)")
    ap.add_argument("--mask-ch", type=int, default=FCPMConfig.mask_ch,
                    help=f"channels of the merge's mask branches (default {FCPMConfig.mask_ch})")
    ap.add_argument("--corr", type=int, default=FCPMConfig.corr,
                    help=f"channels of the merge's flow-correction net (default {FCPMConfig.corr})")
    return ap


def check_args(ap, a) -> None:
    """The vsvitm-train-fcpm options that must agree (argparse's error where they do not).

    ap: the argument parser.
    a: the parsed command line.
    """
    if a.prune_from and (a.init or a.init_correction):
        ap.error("--prune-from starts the network from that checkpoint: give it without --init/--init-correction")
    if a.hidden < 1 or a.mask_ch < 1 or a.corr < 1:
        ap.error("--hidden, --mask-ch and --corr must be positive")


def parse_args(argv=None):
    """The command line, checked (argparse's error on a bad value or combination).

    argv: command-line arguments (None: sys.argv[1:]).
    """
    return parse_run_args(build_parser(), check_args, argv)


def make_model(a, out: Path, dev):
    """(network, optimiser, schedule, step, config, the --prune-from network or None): resumed from the run's
    last.pt, else started from --init, --init-correction, --prune-from or scratch; writes config.json.

    a: the parsed command line.
    out: the run's folder.
    dev: the torch device.
    """
    cfg = FCPMConfig(hidden=a.hidden, mask_ch=a.mask_ch, corr=a.corr, forward=not a.no_forward, backward=not a.no_backward, fallback=not a.no_fallback,
                     flow_cue=a.flow_cue, agree_cue=a.agree_cue, evidence_gate=a.evidence_gate)
    wide = load_net(a.prune_from, FCPM, FCPMConfig) if a.prune_from else None
    if wide is not None:  # the pruned network is the wide one at the widths asked
        cfg = dataclasses.replace(wide.cfg, hidden=a.hidden, mask_ch=a.mask_ch, corr=a.corr)
    model, opt, sched, step, resumed = new_model(FCPM, cfg, a, out, dev)
    if not resumed and a.init:
        model.load_compatible(torch.load(a.init, map_location="cpu", weights_only=False)["model"])
        print(f"initialised from {a.init}", flush=True)
    elif not resumed and a.init_correction:
        theirs = torch.load(a.init_correction, map_location="cpu", weights_only=False)["model"]
        model.correct.load_state_dict({k[len("correct."):]: v for k, v in theirs.items() if k.startswith("correct.")})
        print(f"flow correction initialised from {a.init_correction}", flush=True)
    (out / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "args": vars(a)}, indent=1))
    return model, opt, sched, step, cfg, wide


def main(argv=None):
    """Entry point of vsvitm-train-fcpm: trains until --steps, resumable.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    a = parse_args(argv)
    dev, out = start_run(a)
    icam = load_net(a.icam, ICAM, ICAMConfig)
    model, opt, sched, step, cfg, wide = make_model(a, out, dev)
    from .sources import load_sources
    sources = load_sources(a.data, split="train")
    ds = FCPMBatches(sources, icam, a.batch, a.size, a.run, a.seed, start_step=step,
                     video_weight=a.video_weight, knee=a.knee, p_bad_flow=a.bad_flow)
    if step == 0 and wide is not None:
        calib = [ds.batch_at(10**7 + i) for i in range(2)]  # steps no run reaches
        keep = prune(wide, model, fcpm_groups(wide.cfg), fcpm_widths(cfg),
                     lambda net: [run_fcpm(net, b) for b in calib])
        print(f"pruned from {a.prune_from}; kept channels: {keep}", flush=True)
    teacher = load_teacher(a, wide, FCPM, FCPMConfig, dev)
    train(Run(a, out, dev, model, opt, sched, step, cfg), batch_loader(ds, a.workers), teacher)


def train(run: Run, dl, teacher) -> None:
    """The training loop: losses, steps, the log and checkpoints.

    run: the network, its optimiser and schedule, the step to start from, the command line and folder.
    dl: the batch loader.
    teacher: the frozen teacher network, or None.
    """
    a, out, dev, model, opt, sched, step, cfg = (run.a, run.out, run.dev, run.model, run.opt, run.sched, run.step,
                                                 run.cfg)
    log = open(out / "log.txt", "a")
    progress = Progress(5, 0.95, 0.05)
    for b in dl:
        b = to_device(b, dev)
        if step >= a.steps:
            break
        logy = run_fcpm(model, b, log=True)
        lin = input_linear(b["cur"].flatten(0, 1)).view_as(b["hdr"])
        outp = (1 - b["alpha"]) * lin + b["alpha"] * (torch.exp(logy) - EPS).clamp_min(0)
        lpix = log_l1(logy, b["hdr"], b["alpha"], a.overshoot)
        ltmp = temporal_l1(outp, b["hdr"], b["alpha"])
        loss = a.gt_weight * lpix + a.temporal_weight * ltmp
        ldist = distill_term(teacher, lambda net: run_fcpm(net, b, log=True), logy, b["alpha"])
        loss = loss + a.distill * ldist
        optimise(model, opt, sched, loss)
        step += 1
        avg, rate = progress.add(step, [loss.item(), lpix.item(), ltmp.item(), ldist.item()])
        if rate is not None:
            line = (f"step {step}/{a.steps} loss {avg[0]:.4f} pix {avg[1]:.4f} temporal {avg[2]:.4f} teacher {avg[3]:.4f} "
                    f"{rate:.2f}s/it eta {rate * (a.steps - step) / 60:.0f}min")
            log_line(log, line)
        if step % a.ckpt_every == 0 or step == a.steps:
            save_last(out, model, opt, sched, step, config=cfg.to_dict())
    print("done", flush=True)


if __name__ == "__main__":
    main()
