"""Training-side code (torch): networks, data synthesis, losses, metrics, export, and the training tools.

Library: icam_net, fcpm_net, nets_common (the networks), sources, camera, synth, saved, pans, exr (data),
icam_data, fcpm_data (batches), losses, metrics, prune, export. Tools, one module per command (setup.cfg):
make_devset (vsvitm-make-devset), make_pans (vsvitm-make-pans), synthesize (vsvitm-synthesize),
train_icam (vsvitm-train-icam), train_fcpm (vsvitm-train-fcpm), runs (their run folders and loop helpers),
soup (vsvitm-soup), export_models (vsvitm-export), checkpoint_from_onnx (vsvitm-checkpoint-from-onnx),
quantize (vsvitm-quantize).
"""


def add_source_and_loss_args(ap) -> None:
    """Options both training scripts take: how sources are drawn (sources.pick_source) and the log loss."""
    ap.add_argument("--video-weight", type=float, default=None,
                    help="probability of drawing a video source (default: uniform over all sources)")
    ap.add_argument("--knee", type=float, default=0.0,
                    help="probability of rolling off a source's highlights like a graded master (sources.highlight_knee)")
    ap.add_argument("--overshoot", type=float, default=1.0,
                    help="weight of log errors above the truth relative to those below (losses.log_l1; 1 = plain L1)")


def add_distill_args(ap) -> None:
    """Options both training scripts take for a narrower network started from a trained one (prune.py)."""
    ap.add_argument("--prune-from", metavar="CKPT",
                    help="start from this trained checkpoint cut to the widths asked (its most important channels, "
                         "vsvitm.training.prune), instead of from scratch; every other setting of the network is "
                         "the checkpoint's")
    ap.add_argument("--teacher", metavar="CKPT",
                    help="also learn this frozen network's output (distillation; usually the --prune-from checkpoint)")
    ap.add_argument("--distill", type=float, default=1.0,
                    help="weight of the distance to the teacher's log output, where frames are over-exposed")
    ap.add_argument("--gt-weight", type=float, default=1.0, help="weight of the ground-truth pixel loss")


def load_net(path, net_cls, cfg_cls, device="cpu"):
    """A frozen network (eval mode, no gradients) from a training checkpoint."""
    import torch
    st = torch.load(path, map_location="cpu", weights_only=False)
    net = net_cls(cfg_cls.from_dict(st["config"]))
    net.load_state_dict(st["model"])
    net.eval().requires_grad_(False)
    return net.to(device)


def load_teacher(a, wide, net_cls, cfg_cls, device):
    """The frozen network of --teacher, or None. Usually it is the --prune-from checkpoint, already
    loaded as `wide` (frozen by load_net): that one is reused instead of being loaded again."""
    if not a.teacher:
        return None
    from pathlib import Path
    if wide is not None and Path(a.teacher).resolve() == Path(a.prune_from).resolve():
        return wide.to(device)
    return load_net(a.teacher, net_cls, cfg_cls, device)


def pick_device(name: str = "auto"):
    """'auto' -> CUDA when torch sees a GPU, else the CPU; otherwise torch.device(name)."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(obj, dev):
    """Tensors in (nested) dicts and lists moved to dev."""
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, dev) for v in obj]
    return obj.to(dev, non_blocking=True) if hasattr(obj, "to") else obj


def batch_loader(dataset, workers: int):
    """The training scripts' DataLoader over an endless batch dataset, `workers` processes prefetching.
    With several workers OpenCV runs one thread in each (set here, before the fork: set inside a forked
    worker it can hang), so synthesis does not oversubscribe the cores the workers already fill."""
    import torch
    if workers > 1:
        import cv2
        cv2.setNumThreads(1)
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                       persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
