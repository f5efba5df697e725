"""vsvitm-train-fcpm (vsvitm.training.train_fcpm) end to end on tiny stills."""
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_stills  # noqa: E402


def test_train_fcpm_script_other_width_with_the_flow_correction_of_another(tmp_path):
    """vsvitm-train-fcpm --hidden/--mask-ch trains a network of another width; --init-correction starts
    its merge's flow correction from another FCPM's (the rest from scratch); a bad width is refused."""
    from vsvitm.training.fcpm_net import FCPM
    from vsvitm.training.icam_net import ICAM, ICAMConfig

    data = tiny_stills(tmp_path)
    torch.manual_seed(0)
    icfg = ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2)
    torch.save({"model": ICAM(icfg).state_dict(), "config": icfg.to_dict()}, tmp_path / "icam.pt")
    wide = FCPM()
    torch.save({"model": wide.state_dict(), "config": wide.cfg.to_dict()}, tmp_path / "fcpm.pt")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vsvitm.training.train_fcpm", "--data", str(data), "--icam", str(tmp_path / "icam.pt"), "--out", str(out),
           "--steps", "2", "--batch", "1", "--size", "64", "--run", "3", "--lr", "0", "--workers", "0",
           "--device", "cpu", "--hidden", "4", "--mask-ch", "6", "--init-correction", str(tmp_path / "fcpm.pt")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    st = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert st["step"] == 2 and st["config"]["hidden"] == 4 and st["config"]["mask_ch"] == 6
    assert st["model"]["prop_f.body.0.weight"].shape[0] == 4 and st["model"]["mask.local.0.weight"].shape[0] == 6
    for k, v in wide.state_dict().items():  # lr 0: what was loaded is still there
        if k.startswith("correct."):
            torch.testing.assert_close(st["model"][k], v)
    bad = subprocess.run(cmd[:-6] + ["--hidden", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--hidden, --mask-ch and --corr must be positive" in bad.stderr
