"""Train ICAM (stage 1) on synthetic LDR/HDR video made on the fly from ../shared/data (vsvitm-train-icam).

Resumable (re-run the same command), seeded, logs to OUT/log.txt. Example (the shipped weights):
    vsvitm-train-icam --out runs/icam --steps 3000
Ablations (paper Table 2): --no-flow-correction --no-deformable --no-global --no-exposure-norm
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from ..flow import PRESETS
from . import batch_loader, load_net, load_teacher, to_device
from .icam_data import ICAMBatches
from .icam_net import ICAM, ICAMConfig, load_compatible
from .losses import flow_l1, log_l1, log_l1_to
from .prune import icam_groups, icam_widths, prune
from .runs import Progress, Run, add_run_args, distill_term, log_line, optimise, new_model, parse_run_args, save_last, start_run


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-train-icam's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap, out="runs/icam", steps=3000, batch=4, lr=2e-4, ckpt_every=100)
    ap.add_argument("--max-refs", type=int, default=4)
    ap.add_argument("--flow-weight", type=float, default=0.05)
    ap.add_argument("--init", help="start from these weights (a checkpoint .pt), e.g. for short ablation runs")
    ap.add_argument("--reset-head", action="store_true", help="zero the output conv of --init weights (restart from Y = f^-1(L))")
    ap.add_argument("--clipped-only", action="store_true",
                    help="pixel loss only where the key is really clipped (code >= 0.99), not on all of alpha > 0")
    ap.add_argument("--bad-flow", type=float, default=0.0,
                    help="probability that a reference's pre-flow is perturbed (teaches distrust of misalignment)")
    ap.add_argument("--bad-ratio", type=float, default=0.0,
                    help="probability that a reference's exposure ratio is off by up to +-0.5 stop")
    ap.add_argument("--no-flow-correction", action="store_true")
    ap.add_argument("--no-deformable", action="store_true")
    ap.add_argument("--no-global", action="store_true")
    ap.add_argument("--no-exposure-norm", action="store_true")
    ap.add_argument("--no-clue", action="store_true", help="without the image-level clue accumulation (ours)")
    ap.add_argument("--parallax", type=float, default=0.0,
                    help="probability that a still source gets a foreground layer moving against the background "
                         "(parallax and occlusion: references that no global alignment fits)")
    ap.add_argument("--preflow", choices=tuple(PRESETS), default="fast",
                    help="DIS preset of the training pre-flows (the shipped weights: fast; the plugin runs medium)")
    ap.add_argument("--homography-preflow", action="store_true",
                    help="start each pre-flow's DIS from the homography of ORB matches (flow.HomographyDIS), "
                         "as the plugin does for an ICAM exported with --homography-preflow (the shipped one)")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="stop (with a checkpoint) after this many minutes of training, e.g. on a lent GPU; "
                         "the cosine schedule is then fitted to the steps that fit in that time (rate of steps 10..60)")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also keep the weights of every N-th step (step_N.pt)")
    ap.add_argument("--c1", type=int, default=ICAMConfig.c1,
                    help=f"channels of the 1/2-res features (default {ICAMConfig.c1}, the shipped width; most of a "
                         "reference step's cost)")
    ap.add_argument("--align", type=int, default=ICAMConfig.align,
                    help=f"channels of the flow-correction and offset nets (default {ICAMConfig.align})")
    ap.add_argument("--blind-weight", type=float, default=0.0,
                    help="weight of the distance, where no reference tells more than the key (icam_data.reference_informs), "
                         "to --blind-anchor's result without references: references that see nothing leave the guess alone")
    ap.add_argument("--blind-anchor", metavar="CKPT",
                    help="the frozen network whose single-frame result --blind-weight keeps (default: --init)")
    ap.add_argument("--flat-exposure", type=float, default=0.0, metavar="P",
                    help="probability that a training sequence keeps the key frame's exposure on every frame "
                         "(icam_data.flatten_exposure: references that see what the key sees, as in locked-exposure video)")
    ap.add_argument("--near-exposure", type=float, default=0.0, metavar="P",
                    help="probability that a training sequence's exposure only drifts slowly around the key frame's "
                         "(icam_data.drift_exposure: references a few per cent darker or brighter, as in roadtrip)")
    ap.add_argument("--near-stops", type=float, default=0.3, metavar="S",
                    help="--near-exposure's drift: up to S stops over 60 frames, each of a ramp and a bend")
    return ap


def check_args(ap, a) -> None:
    """The vsvitm-train-icam options that must agree (argparse's error where they do not).

    ap: the argument parser.
    a: the parsed command line.
    """
    if not 0.0 <= a.flat_exposure <= 1.0:
        ap.error(f"--flat-exposure is a probability: give a value in [0, 1], not {a.flat_exposure}")
    if not 0.0 <= a.near_exposure <= 1.0:
        ap.error(f"--near-exposure is a probability: give a value in [0, 1], not {a.near_exposure}")
    if a.flat_exposure + a.near_exposure > 1.0:
        ap.error("--flat-exposure and --near-exposure are shares of the same sequences: their sum must be at most 1")
    if a.blind_weight > 0 and not (a.blind_anchor or a.init):
        ap.error("--blind-weight needs --blind-anchor or --init (the network whose single-frame guess to keep)")
    if a.prune_from and a.init:
        ap.error("--prune-from starts the network from that checkpoint: give it without --init")
    if not 0 <= a.max_refs <= 12:
        ap.error(f"--max-refs must be 0..12 (the plugin's 6 each way at most), got {a.max_refs}")
    if a.c1 < 1 or a.align < 1:
        ap.error("--c1 and --align must be positive")


def parse_args(argv=None):
    """The command line, checked (argparse's error on a bad value or combination).

    argv: command-line arguments (None: sys.argv[1:]).
    """
    return parse_run_args(build_parser(), check_args, argv)


def make_model(a, out: Path, dev):
    """(network, optimiser, schedule, step, config, the --prune-from network or None): resumed from the run's
    last.pt, else started from --init, --prune-from or scratch; writes the run's config.json.

    a: the parsed command line.
    out: the run's folder.
    dev: the torch device.
    """
    cfg = ICAMConfig(c1=a.c1, align=a.align, flow_correction=not a.no_flow_correction, deformable=not a.no_deformable,
                     global_attention=not a.no_global, clue=not a.no_clue)
    wide = load_net(a.prune_from, ICAM, ICAMConfig) if a.prune_from else None
    if wide is not None:  # the pruned network is the wide one with fewer channels at 1/2 res
        cfg = dataclasses.replace(wide.cfg, c1=a.c1, align=a.align)
    model, opt, sched, step, resumed = new_model(ICAM, cfg, a, out, dev)
    if not resumed and a.init:
        st = torch.load(a.init, map_location="cpu", weights_only=False)
        fresh = load_compatible(model, st["model"])
        print(f"initialised from {a.init} (step {st.get('step')}); new or reshaped: {fresh}", flush=True)
    if step == 0 and (a.reset_head or not (a.init or a.prune_from)):  # start from Y = f^-1(L): the residual head at zero
        torch.nn.init.zeros_(model.d0[-1].weight)
        torch.nn.init.zeros_(model.d0[-1].bias)
    meta = {"config": cfg.to_dict(), "args": vars(a), "exposure_norm": not a.no_exposure_norm}
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    return model, opt, sched, step, cfg, wide


def make_batches(a, step: int) -> ICAMBatches:
    """The endless training batches from the training sources, from this step on.

    a: the parsed command line.
    step: the first step's number (a resumed run continues the same batches).
    """
    from .sources import load_sources
    sources = load_sources(a.data, split="train")
    print(f"{len(sources)} training sources", flush=True)
    ds = ICAMBatches(sources, a.batch, a.size, a.max_refs, a.seed, exposure_norm=not a.no_exposure_norm,
                     start_step=step, p_bad_flow=a.bad_flow, p_bad_ratio=a.bad_ratio,
                     video_weight=a.video_weight, knee=a.knee, p_parallax=a.parallax,
                     preflow=a.preflow, p_flat_exposure=a.flat_exposure,
                     p_near_exposure=a.near_exposure, near_stops=a.near_stops,
                     homography_preflow=a.homography_preflow)
    if a.homography_preflow:
        print(f"homography-started pre-flows ({a.preflow})", flush=True)
    return ds


def prune_from_wide(a, wide, model, cfg, ds: ICAMBatches) -> None:
    """Start the network from the --prune-from network's most important channels.

    a: the parsed command line.
    wide: the --prune-from network.
    model: the network being trained (narrower).
    cfg: its config.
    ds: the batches (a few, at steps no run reaches, rank the channels).
    """
    calib = [ds.batch_at(10**7 + i) for i in range(4)]  # steps no run reaches

    def feed(net):
        for b in calib:
            net(b["key"], b["refs"], b["flows"], log=True)
    keep = prune(wide, model, icam_groups(wide.cfg), icam_widths(cfg), feed)
    print(f"pruned from {a.prune_from}; kept channels: {keep}", flush=True)


def main(argv=None):
    """Entry point of vsvitm-train-icam: trains until --steps (or --max-minutes), resumable.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    a = parse_args(argv)
    dev, out = start_run(a)
    model, opt, sched, step, cfg, wide = make_model(a, out, dev)
    ds = make_batches(a, step)
    if step == 0 and wide is not None:
        prune_from_wide(a, wide, model, cfg, ds)
    teacher = load_teacher(a, wide, ICAM, ICAMConfig, dev)
    anchor = load_net(a.blind_anchor or a.init, ICAM, ICAMConfig, dev) if a.blind_weight > 0 else None
    train(Run(a, out, dev, model, opt, sched, step, cfg), batch_loader(ds, a.workers), teacher, anchor)


def train(run: Run, dl, teacher, anchor) -> None:
    """The training loop: losses, steps, the log and checkpoints.

    run: the network, its optimiser and schedule, the step to start from, the command line and folder.
    dl: the batch loader.
    teacher: the frozen teacher network, or None.
    anchor: the frozen network whose single-frame guess --blind-weight keeps, or None.
    """
    a, out, dev, model, opt, sched, step, cfg = (run.a, run.out, run.dev, run.model, run.opt, run.sched, run.step,
                                                 run.cfg)
    log = open(out / "log.txt", "a")
    progress = Progress(10, 0.98, 0.02)
    t_end = time.time() + a.max_minutes * 60 if a.max_minutes > 0 else float("inf")
    fit_at, t_fit = step + 60, None  # the rate is measured over steps +10..+60 (after start-up)
    model.train()
    for batch in dl:
        batch = to_device(batch, dev)
        if step >= a.steps:
            break
        logy, flows = model(batch["key"], batch["refs"], batch["flows"], log=True)
        w = batch["alpha"]
        if a.clipped_only:  # where the key holds no information, Y is all there is
            w = w * (batch["key"][:, :3].amax(1, keepdim=True) >= 0.99).float()
        lpix = log_l1(logy, batch["hdr"], w, a.overshoot)
        lflow = flow_l1(flows, batch["gt_flows"], batch["gt_valid"]) if cfg.flow_correction else torch.zeros(())
        loss = a.gt_weight * lpix + a.flow_weight * lflow
        ldist = distill_term(teacher, lambda net: net(batch["key"], batch["refs"], batch["flows"], log=True)[0], logy, w)
        loss = loss + a.distill * ldist
        lblind = torch.zeros(())
        if anchor is not None and batch["refs"]:
            with torch.no_grad():
                log0 = anchor(batch["key"], [], [], log=True)[0]
            lblind = log_l1_to(logy, log0, w * batch["blind"], norm=w)
            loss = loss + a.blind_weight * lblind
        optimise(model, opt, sched, loss)
        step += 1
        if step == fit_at - 50:
            t_fit = time.time()
        avg, rate = progress.add(step, [loss.item(), lpix.item(), float(lflow.detach()), ldist.item(), lblind.item()])
        if rate is not None:
            line = (f"step {step}/{a.steps} refs {len(batch['refs'])} loss {avg[0]:.4f} pix {avg[1]:.4f} "
                    f"flow {avg[2]:.3f} teacher {avg[3]:.4f} blind {avg[4]:.4f} lr {sched.get_last_lr()[0]:.2e} {rate:.2f}s/it eta {rate * (a.steps - step) / 60:.0f}min")
            log_line(log, line)
        if a.max_minutes > 0 and step == fit_at:  # fit the cosine schedule to the time left, at the rate so far
            sched.T_max = a.steps = step + int((t_end - time.time()) / ((time.time() - t_fit) / 50))
            print(f"--max-minutes: schedule fitted to {a.steps} steps", flush=True)
        out_of_time = time.time() >= t_end
        if step % a.ckpt_every == 0 or step == a.steps or out_of_time:
            save_last(out, model, opt, sched, step, config=cfg.to_dict(), exposure_norm=not a.no_exposure_norm)
        if a.snapshot_every and step % a.snapshot_every == 0:
            torch.save({"model": model.state_dict(), "step": step, "config": cfg.to_dict(),
                        "exposure_norm": not a.no_exposure_norm}, out / f"step_{step}.pt")
        if out_of_time:
            print(f"stopped at step {step}: --max-minutes {a.max_minutes} reached (resume with the same command)", flush=True)
            break
    print("done", flush=True)


if __name__ == "__main__":
    main()
