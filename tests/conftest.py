import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_script(name: str = "demo"):
    """scripts/<name>.py as a module (scripts/demo.py: the scripts are not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"vsvitm_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Small randomly initialised ICAM and FCPM graphs exported during the test run (plumbing tests only)."""
    pytest.importorskip("torch", reason="exporting test graphs needs torch (pip install -e .[train])")
    from vsvitm.evaluation.bench_models import export_tiny_models
    return export_tiny_models(tmp_path_factory.mktemp("models"))


def tiny_stills(tmp_path):
    """A data folder of two small HDR stills (EXR), for the training tools' end-to-end tests."""
    import cv2

    from vsvitm.training.exr import write_exr
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        img = 0.18 * np.exp2(2.0 * rng.standard_normal((24, 32, 3))).astype(np.float32)
        write_exr(data / f"s{i}.exr", cv2.resize(img, (192, 144), interpolation=cv2.INTER_CUBIC).clip(1e-3, None))
    return data


def moving_clip(n=30, h=48, w=64, seed=0, cut_at=None):
    """A small LDR clip: a textured scene panning right with exposure swinging, so highlights clip
    in some frames and not in others (what temporal clues are made of)."""
    rng = np.random.default_rng(seed)
    base = rng.random((h, w * 3)).astype(np.float32)
    import cv2
    base = cv2.GaussianBlur(base, (0, 0), 2) * 2.5
    base[: h // 3, w: 2 * w] *= 3.0
    frames = []
    for t in range(n):
        x0 = t % w
        view = base[:, x0: x0 + w]
        if cut_at is not None and t >= cut_at:  # another scene: a dark-to-bright gradient under other texture
            view = np.linspace(0.05, 1.5, h, dtype=np.float32)[:, None] * (0.5 + base[::-1, ::-1][:, x0: x0 + w])
        e = 0.6 + 0.5 * np.sin(t / 5)
        lin = np.clip(np.repeat(view[..., None], 3, -1) * e * np.float32([1.0, 0.9, 0.8]), 0, 1)
        frames.append((lin ** (1 / 2.2) * 255 + 0.5).astype(np.uint8))
    return np.stack(frames)


def vspipe_ok() -> bool:
    exe = shutil.which("vspipe") or str(Path(sys.executable).with_name("vspipe"))
    if not Path(exe).exists():
        return False
    return subprocess.run([exe, "--version"], capture_output=True).returncode == 0


# random_feeds: inputs not fed one frame at full resolution: name -> (batch, scale); by graph where the name is shared
FEED_SHAPES = {"fl": (1, 2), "g": (1, 16)}  # ICAM's state, at 1/2 and 1/16 resolution
GRAPH_FEED_SHAPES = {
    # every merged key at once (fcpm_keys, 5 by default), at 1/2 resolution
    "fcpm_merge_correct": {"x": (5, 2)},
}


def random_feeds(sess, h: int, w: int, seed: int = 0, graph: str | None = None) -> dict:
    """Random inputs for any of the graphs at an h x w frame (multiples of 64), shaped as the engine
    feeds them: channel counts come from the graph (only N, H, W are dynamic), batch and resolution
    from FEED_SHAPES / GRAPH_FEED_SHAPES[graph]."""
    rng = np.random.default_rng(seed)
    shapes = {**FEED_SHAPES, **GRAPH_FEED_SHAPES.get(graph, {})}
    out = {}
    for i in sess.get_inputs():
        c = i.shape[1]
        if i.name == "valid":
            out[i.name] = np.ones((1, c, 1, 1), np.float32)
        elif i.name in ("preflows", "flow", "preflow"):
            out[i.name] = rng.standard_normal((1, c, h, w), dtype=np.float32)
            out[i.name] *= 3
        else:
            n, f = shapes.get(i.name, (1, 1))
            out[i.name] = rng.random((n, c, h // f, w // f), np.float32)
    return out
