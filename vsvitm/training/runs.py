"""A training run's folder (vsvitm-train-icam, vsvitm-train-fcpm): resumable checkpoints and the log."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checkout import shared_data
from . import add_distill_args, add_source_and_loss_args


@dataclass
class Run:
    """What a training loop works on."""
    a: object       # the parsed command line
    out: Path       # the run's folder
    dev: object     # the torch device
    model: object   # the network
    opt: object     # its optimiser
    sched: object   # its learning-rate schedule
    step: int       # the step to start from
    cfg: object     # the network's config


def default_data() -> str | None:
    """The training scripts' default --data: the shared HDR material beside the checkout, or None."""
    p = shared_data()
    return str(p) if p is not None else None


def add_run_args(ap, *, out: str, steps: int, batch: int, lr: float, ckpt_every: int) -> None:
    """The options both training tools take: data, run folder, steps, batch, crop size, learning rate, seed,
    device, threads, data workers, checkpoint interval, how sources are drawn, the log loss, distillation.

    ap: the argument parser.
    out: the default run folder.
    steps: the default number of steps.
    batch: the default batch size.
    lr: the default learning rate.
    ckpt_every: the default steps between checkpoints.
    """
    ap.add_argument("--data", default=default_data(), help="HDR material root (default ../shared/data)")
    ap.add_argument("--out", default=out)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--size", type=int, default=128, help="crop size, a multiple of 64 (ICAM's modulus)")
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda:N")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workers", type=int, default=1, help="data worker processes")
    ap.add_argument("--ckpt-every", type=int, default=ckpt_every)
    add_source_and_loss_args(ap)
    add_distill_args(ap)


def parse_run_args(ap, check, argv=None):
    """The parsed command line, checked: the crop size and the data folder here, the tool's own options by
    `check` (argparse's error on a bad value).

    ap: the tool's argument parser.
    check: check(ap, args) for the tool's own options.
    argv: command-line arguments (None: sys.argv[1:]).
    """
    a = ap.parse_args(argv)
    check(ap, a)
    if a.size < 64 or a.size % 64:
        ap.error(f"--size must be a positive multiple of 64 (ICAM works on 1/16 resolution in 4x4 windows), got {a.size}")
    if not a.data or not Path(a.data).exists():
        ap.error("no data folder: pass --data DIR (a folder with hdr-stills/ and hdr-video/: docs/TRAINING.md)")
    return a


def start_run(a):
    """(torch device, run folder): the seed and thread count set, the folder made.

    a: the parsed command line (seed, threads, device, out).
    """
    import torch

    from . import pick_device
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    return dev, out


def distill_term(teacher, run, logy, w):
    """The distance of the log output to the frozen teacher's, where w weighs it (0 without a teacher).

    teacher: the teacher network, or None.
    run: run(net) -> that network's log output on the batch.
    logy: the trained network's log output.
    w: per-pixel weights.
    """
    import torch

    from .losses import log_l1_to
    if teacher is None:
        return torch.zeros(())
    with torch.no_grad():
        logt = run(teacher)
    return log_l1_to(logy, logt, w)


def optimise(model, opt, sched, loss) -> None:
    """One step: gradients of the loss, clipped to norm 1, applied; the schedule advanced.

    model: the network.
    opt: its optimiser.
    sched: its learning-rate schedule.
    loss: the batch's loss.
    """
    import torch
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def new_model(net_cls, cfg, a, out: Path, dev):
    """(network, Adam optimiser, cosine schedule, step, resumed): a network of this config with its
    optimiser and schedule, resumed from the run's last.pt where there is one (else at step 0).

    net_cls: the network class (ICAM, FCPM).
    cfg: its config.
    a: the parsed command line (lr, steps).
    out: the run's folder.
    dev: the torch device.
    """
    import torch
    model = net_cls(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps, eta_min=a.lr * 0.1)
    resumed = (out / "last.pt").exists()
    step = resume(out / "last.pt", model, opt, sched) if resumed else 0
    return model, opt, sched, step, resumed


def resume(ckpt: Path, model, opt, sched) -> int:
    """Load the run's last checkpoint into the network, optimiser and schedule; the step it was at.

    ckpt: the run's last.pt.
    model: the network.
    opt: its optimiser.
    sched: its learning-rate schedule.
    """
    import torch
    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    sched.load_state_dict(st["sched"])
    print(f"resumed from {ckpt} at step {st['step']}", flush=True)
    return st["step"]


def save_last(out: Path, model, opt, sched, step: int, **extra) -> None:
    """Write the run's last.pt (through a temporary file, so a stop mid-write keeps the previous one).

    out: the run's folder.
    model: the network.
    opt: its optimiser.
    sched: its learning-rate schedule.
    step: the steps trained.
    extra: more entries (config, exposure_norm).
    """
    import torch
    tmp = out / "last.pt.tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "step": step, **extra}, tmp)
    tmp.replace(out / "last.pt")


class Progress:
    """Running means of a training loop's loss terms, and the seconds per step every `every` steps."""

    def __init__(self, every: int, keep: float, new: float):
        """every: steps between reports.
        keep: weight of the running mean in each update.
        new: weight of the step's values in each update.
        """
        import time
        self.every, self.keep, self.new = every, keep, new
        self.avg, self.t0 = None, time.time()

    def add(self, step: int, vals: list[float]):
        """(running means, seconds per step) after this step; the seconds are None except every `every` steps.

        step: the step just made.
        vals: its loss terms.
        """
        import time

        import numpy as np
        v = np.array(vals)
        self.avg = v if self.avg is None else self.keep * self.avg + self.new * v
        if step % self.every:
            return self.avg, None
        rate = (time.time() - self.t0) / self.every
        self.t0 = time.time()
        return self.avg, rate


def log_line(log, line: str) -> None:
    """A progress line on stdout and in the run's log.txt.

    log: the open log file.
    line: the text.
    """
    print(line, flush=True)
    log.write(line + "\n")
    log.flush()
