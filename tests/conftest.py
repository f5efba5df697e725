import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_script(name: str = "evaluate"):
    """scripts/<name>.py as a module (the scripts are not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"vsvitm_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Small randomly initialised ICAM and FCPM graphs exported during the test run (plumbing tests only)."""
    torch = pytest.importorskip("torch", reason="exporting test graphs needs torch (pip install -e .[train])")
    from vsvitm.training.export import export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    from vsvitm.training.icam_net import ICAM, ICAMConfig
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models")
    export_icam(ICAM(ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2)), out, size=(64, 64), fp16=False)
    export_fcpm(FCPM(FCPMConfig(hidden=8, mask_ch=8)), out, size=(64, 64), fp16=False)
    return out


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
