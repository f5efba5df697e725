"""vsvitm-train-icam (vsvitm.training.train_icam) end to end on tiny stills, and its option checks."""
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_stills  # noqa: E402
from vsvitm.training import train_icam  # noqa: E402
from vsvitm.training.icam_net import ICAM, ICAMConfig  # noqa: E402

TRAIN = [sys.executable, "-m", "vsvitm.training.train_icam"]


def test_train_icam_script_stops_on_time_with_checkpoint_and_snapshots(tmp_path):
    """vsvitm-train-icam end to end on two tiny stills (parallax layers on): --max-minutes stops it
    early with a checkpoint a rerun resumes from, and --snapshot-every keeps those steps' weights."""
    data = tiny_stills(tmp_path)
    out = tmp_path / "run"
    cmd = TRAIN + ["--data", str(data), "--out", str(out), "--steps", "100000", "--batch", "1",
           "--size", "64", "--max-refs", "1", "--parallax", "1.0", "--workers", "0", "--threads", "1",
           "--ckpt-every", "1000", "--snapshot-every", "2", "--max-minutes", "0.02", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--max-minutes 0.02 reached" in r.stdout
    st = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert 2 <= st["step"] < 100000  # stopped on time, and the checkpoint holds that step
    assert (out / "step_2.pt").exists()
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and f"resumed from {out / 'last.pt'} at step {st['step']}" in r2.stdout


def test_train_icam_blind_weight_keeps_the_anchor_where_references_see_nothing(tmp_path):
    """vsvitm-train-icam --blind-weight: runs, logs the term, and needs an anchor (--blind-anchor or --init)."""
    data = tiny_stills(tmp_path)
    base = TRAIN + ["--data", str(data), "--steps", "10", "--batch", "1", "--size", "64",
            "--max-refs", "2", "--workers", "0", "--threads", "1", "--device", "cpu", "--c1", "8", "--align", "8"]
    r = subprocess.run(base + ["--out", str(tmp_path / "a"), "--blind-weight", "1"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "--blind-weight needs --blind-anchor or --init" in r.stderr
    r = subprocess.run(base + ["--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(base + ["--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "last.pt"), "--blind-weight", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    blind = [float(line.split(" blind ")[1].split()[0]) for line in r.stdout.splitlines() if line.startswith("step ")]
    assert blind and all(np.isfinite(blind)) and max(blind) > 0  # references drawn in 10 steps: the term acts


def test_train_icam_homography_preflow(tmp_path):
    """vsvitm-train-icam --homography-preflow: the data's pre-flows come from flow.HomographyDIS (DIS started from a feature
    homography, what the plugin makes for an ICAM exported with --homography-preflow), the flow object survives
    pickling (data workers), and a short run trains on it."""
    import pickle

    from vsvitm.flow import HomographyDIS
    g = pickle.loads(pickle.dumps(HomographyDIS("medium", features=500)))
    assert isinstance(g, HomographyDIS) and g.features == 500 and g.max_side == 320
    from vsvitm.training.icam_data import ICAMBatches
    assert isinstance(ICAMBatches([], 1, 64, 1, 0, preflow="medium", homography_preflow=True).flow_fn, HomographyDIS)
    assert not isinstance(ICAMBatches([], 1, 64, 1, 0, preflow="medium").flow_fn, HomographyDIS)

    data = tiny_stills(tmp_path)
    cmd = TRAIN + ["--data", str(data), "--out", str(tmp_path / "h"),
           "--steps", "4", "--batch", "1", "--size", "64", "--max-refs", "2", "--workers", "1", "--threads", "1",
           "--device", "cpu", "--c1", "8", "--align", "8", "--preflow", "medium", "--homography-preflow"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "homography-started pre-flows" in r.stdout
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    assert cfg["args"]["homography_preflow"] is True


@pytest.mark.parametrize("script", ["train_icam", "train_fcpm"])
def test_train_scripts_prune_from_a_trained_network_and_learn_from_it(tmp_path, script):
    """--prune-from starts a narrower network from a wider checkpoint's channels (lr 0: they are still there
    after ten steps) and --teacher adds the distance to that network's output to the loss (logged)."""
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig

    data = tiny_stills(tmp_path)
    torch.manual_seed(0)
    icfg = ICAMConfig(c1=12, c2=8, c3=8, c4=16, offsets=2)
    torch.save({"model": ICAM(icfg).state_dict(), "config": icfg.to_dict()}, tmp_path / "icam.pt")
    fcfg = FCPMConfig(hidden=6, mask_ch=6)
    torch.save({"model": FCPM(fcfg).state_dict(), "config": fcfg.to_dict()}, tmp_path / "fcpm.pt")
    wide = tmp_path / ("icam.pt" if script == "train_icam" else "fcpm.pt")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", f"vsvitm.training.{script}", "--data", str(data),
           "--out", str(out), "--steps", "10", "--batch", "1", "--size", "64", "--lr", "0", "--workers", "0",
           "--device", "cpu", "--prune-from", str(wide), "--teacher", str(wide), "--gt-weight", "0.5"]
    if script == "train_icam":
        cmd += ["--c1", "8", "--max-refs", "1"]
        first, first_width = "enc.e1.0.bias", 8
    else:
        cmd += ["--icam", str(tmp_path / "icam.pt"), "--run", "3", "--hidden", "4", "--mask-ch", "3"]
        first, first_width = "prop_f.body.0.bias", 4
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pruned from" in r.stdout
    keep = eval(r.stdout.split("kept channels: ")[1].splitlines()[0])  # noqa: S307 (our own log line)
    st = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    w = torch.load(wide, map_location="cpu", weights_only=False)["model"]
    assert st["model"][first].shape[0] == first_width
    rows = keep["e1_mid" if script == "train_icam" else "f_mid1"]
    torch.testing.assert_close(st["model"][first], w[first][rows])
    teacher = [float(line.split(" teacher ")[1].split()[0]) for line in r.stdout.splitlines() if " teacher " in line]
    assert teacher and teacher[-1] > 0
    both = subprocess.run(cmd + ["--init", str(wide)], capture_output=True, text=True, timeout=120)
    assert both.returncode != 0 and "give it without --init" in both.stderr


def test_train_icam_refuses_exposure_shares_that_are_not_probabilities(capsys):
    """--flat-exposure and --near-exposure are probabilities of one draw: each in [0, 1], their sum at most 1."""
    for args, says in ((["--flat-exposure", "1.5"], "--flat-exposure is a probability"),
                       (["--flat-exposure", "0.6", "--near-exposure", "0.6"], "their sum must be at most 1")):
        with pytest.raises(SystemExit):
            train_icam.parse_args(["--data", ".", "--out", "x"] + args)
        assert says in capsys.readouterr().err
