"""The graphs a benchmark times: the shipped or given models, or random-weight graphs exported for
timing (--random-models, --arch), and how the manifest describes them."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ..checkout import MODELS


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """--sizes: "WxH,WxH,..." -> [(w, h), ...]; argparse's error on bad input.

    text: the comma-separated list.
    """
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            w, h = (int(v) for v in item.split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {item!r} is not WIDTHxHEIGHT (e.g. 960x540)") from None
        if w < 16 or h < 16:
            raise argparse.ArgumentTypeError(f"size {item!r} is too small (16x16 at least)")
        out.append((w, h))
    if not out:
        raise argparse.ArgumentTypeError("no sizes given")
    return out


def random_arch(spec: str | None) -> dict:
    """--arch JSON -> {"icam": {...}, "fcpm": {...}}: ICAMConfig / FCPMConfig fields that differ from the
    defaults (other network widths, to time networks that have not been trained). Exits on bad input.

    spec: the --arch JSON text, or None.
    """
    if not spec:
        return {}
    try:
        arch = json.loads(spec)
    except ValueError as e:
        sys.exit(f"--arch: not JSON ({e}); e.g. '{{\"icam\": {{\"c1\": 16}}, \"fcpm\": {{\"hidden\": 8}}}}'")
    if not isinstance(arch, dict) or set(arch) - {"icam", "fcpm"} or not all(isinstance(v, dict) for v in arch.values()):
        sys.exit('--arch: expected {"icam": {ICAMConfig fields}, "fcpm": {FCPMConfig fields}}')
    from vsvitm.training.fcpm_net import FCPMConfig
    from vsvitm.training.icam_net import ICAMConfig
    for name, cls in (("icam", ICAMConfig), ("fcpm", FCPMConfig)):
        try:
            cls(**arch.get(name, {}))
        except TypeError as e:
            sys.exit(f"--arch {name}: {e} (fields: {', '.join(cls.__dataclass_fields__)})")
    return arch


def export_random_models(out: Path, fp16: bool, arch: dict | None = None) -> float:
    """Random-weight ICAM and FCPM graphs of the default architecture, or of the widths in `arch`
    (random_arch) (plumbing checks and timings only); returns the seconds the export took.

    out: folder to write the graphs and manifests into.
    fp16: also write the fp16 graphs.
    arch: ICAMConfig / FCPMConfig fields that differ from the defaults (random_arch).
    """
    t0 = time.perf_counter()
    import torch
    from vsvitm.training.export import export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    from vsvitm.training.icam_net import ICAM, ICAMConfig
    torch.manual_seed(0)
    arch = arch or {}
    meta = {"random_weights": True, "random_arch": arch}
    export_icam(ICAM(ICAMConfig(**arch.get("icam", {}))), out, fp16=fp16, meta=meta)
    export_fcpm(FCPM(FCPMConfig(**arch.get("fcpm", {}))), out, fp16=fp16, meta=meta)
    return time.perf_counter() - t0


def export_tiny_models(out: Path) -> Path:
    """Small random-weight ICAM and FCPM graphs at 64x64 (plumbing only: the test suite's, vsvitm-soak's
    without shipped models); returns `out`.

    out: folder to write them into.
    """
    import torch
    from vsvitm.training.export import export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    from vsvitm.training.icam_net import ICAM, ICAMConfig
    torch.manual_seed(0)
    export_icam(ICAM(ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2)), out, size=(64, 64), fp16=False)
    export_fcpm(FCPM(FCPMConfig(hidden=8, mask_ch=8)), out, size=(64, 64), fp16=False)
    return out


def resolve_models(a, need_fcpm: bool, need_fp16: bool) -> tuple[Path | None, str, tempfile.TemporaryDirectory | None]:
    """(model folder, description, temp dir to clean up). Exits 2 when trained models are missing.

    a: the parsed command line (models, random_models, arch).
    need_fcpm: the FCPM is needed too (mode "full").
    need_fp16: the fp16 graphs are needed (backend cuda-fp16).
    """
    arch = random_arch(getattr(a, "arch", None))
    if arch and not a.random_models:
        sys.exit("--arch needs --random-models (it sets the widths of random-weight graphs)")
    if a.random_models:
        desc = ("random-weight graphs of the default architecture (--random-models)" if not arch else
                f"random-weight graphs, widths {json.dumps(arch)} (--random-models --arch)")
        tmp = None
        if a.models:  # export there once and reuse on later runs
            folder = Path(a.models)
            try:
                meta = json.loads((folder / "icam.json").read_text())
            except (OSError, ValueError):
                meta = {}
            if meta:
                if not meta.get("random_weights"):
                    sys.exit(f"--random-models --models {folder}: that folder holds real models; pick an empty one")
                same = meta.get("random_arch", {}) == arch and (folder / "fcpm.json").exists()
                if same and (not need_fp16 or (folder / "icam_init_fp16.onnx").exists()):
                    print(f"{Path(sys.argv[0]).stem}: reusing the random-weight graphs in {folder}", file=sys.stderr)
                    return folder, desc, None
        else:
            tmp = tempfile.TemporaryDirectory(prefix="vsvitm_rand_models_")
            folder = Path(tmp.name)
        print(f"{Path(sys.argv[0]).stem}: exporting random-weight ICAM/FCPM graphs ({json.dumps(arch) if arch else 'default widths'}) to {folder} "
              f"(timings only: the output is meaningless) ...", file=sys.stderr, flush=True)
        dt = export_random_models(folder, fp16=need_fp16, arch=arch)
        print(f"{Path(sys.argv[0]).stem}: exported in {dt:.1f} s", file=sys.stderr, flush=True)
        return folder, desc, tmp
    folder = Path(a.models) if a.models else MODELS
    missing = [n for n in (["icam"] + (["fcpm"] if need_fcpm else [])) if not (folder / f"{n}.json").exists()]
    if missing:
        print(f"{Path(sys.argv[0]).stem}: no trained model in {folder}: missing {', '.join(m + '.json' for m in missing)}.\n"
              f"  Train and export them (vsvitm-train-icam, vsvitm-train-fcpm, vsvitm-export),\n"
              f"  point --models at a folder that has them, or pass --random-models to time random-weight graphs\n"
              f"  of the default architecture (plumbing and speed only).", file=sys.stderr)
        sys.exit(2)
    desc = str(folder)
    try:
        meta = json.loads((folder / "icam.json").read_text())
        if meta.get("random_weights"):
            desc += " (random weights)"
        elif meta.get("soup"):
            desc += f" (ICAM: {soup_description(meta['soup'])})"
        elif "trained_steps" in meta:
            desc += f" (ICAM trained {meta['trained_steps']} steps)"
        desc += f", ICAM config {json.dumps(meta.get('config', {}), sort_keys=True)}"
    except (OSError, ValueError):
        pass
    return folder, desc, None


def soup_description(soup) -> str:
    """How a souped ICAM was made, from its manifest's "soup" list (vsvitm-soup): the mean of N checkpoints
    and their weights when they differ. A soup may hold soups, so N counts the top level only.

    soup: the manifest's "soup" list, one dict per ingredient.
    """
    ws = [float(e.get("weight", 1.0)) for e in soup]   # vsvitm-soup writes one dict per ingredient
    if len(set(ws)) <= 1:
        return f"mean weights of {len(ws)} checkpoints"
    return f"weighted mean of {len(ws)} checkpoints (weights {' : '.join(f'{w:g}' for w in ws)})"


def cuda_ok() -> bool:
    """Whether ONNX Runtime's CUDA provider works here."""
    from vsvitm.backends import cuda_available
    return cuda_available()
