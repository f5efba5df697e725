"""Fast tests of vsvitm-evaluate (vsvitm.evaluation.evaluate and its parts) with a tiny fake sequence and a
stub vsvitm.ITM."""
import csv

import cv2
import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth")

import vsvitm  # noqa: E402
from vsvitm.curves import overexposure_mask, to_linear  # noqa: E402
from vsvitm.vsnp import clip_from_array, clip_to_array  # noqa: E402

from vsvitm.evaluation import evaluate as ev  # noqa: E402
from vsvitm.evaluation.methods import build_methods, parse_method  # noqa: E402
from vsvitm.evaluation.scores import compute_metrics  # noqa: E402
from vsvitm.evaluation.sequences import load_sequence, load_video  # noqa: E402
from vsvitm.evaluation.sheets import display_hdr, pick_frame, zoom_box  # noqa: E402

CALLS = []


def stub_itm(clip, *, mode="temporal", num_refs=6, gain=1.0, **kw):
    """Stand-in for vsvitm.ITM: linear = gamma 2.2; 'icam' with refs fails; the others boost clipped pixels x4."""
    CALLS.append(dict(mode=mode, num_refs=num_refs, gain=gain, **kw))
    if mode == "icam" and num_refs > 0:
        raise RuntimeError("no trained models in vsvitm/models\nsecond line")
    v = clip_to_array(clip).astype(np.float32) / 255.0
    lin = to_linear(v)
    if mode != "linear":
        lin = lin * (1.0 + 3.0 * overexposure_mask(v))
    return clip_from_array((lin * gain).astype(np.float32))


def fake_sequence(t=4, h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    ldr = rng.integers(0, 230, (t, h, w, 3), dtype=np.uint8)
    ldr[:, 2:6, 3:9] = 255  # clipped highlight
    hdr = to_linear(ldr.astype(np.float32) / 255.0)
    hdr[:, 2:6, 3:9] = 4.0  # ground truth behind the clip
    return ldr, hdr.astype(np.float16)


@pytest.fixture
def devset(tmp_path, monkeypatch):
    monkeypatch.setattr(vsvitm, "ITM", stub_itm, raising=False)
    CALLS.clear()
    d = tmp_path / "devset"
    d.mkdir()
    for i, name in enumerate(["seqa", "seqb"]):
        ldr, hdr = fake_sequence(seed=i)
        np.savez(d / f"{name}.npz", ldr=ldr, hdr=hdr)
    return d


def test_parse_and_build_methods():
    assert parse_method('no-expnorm:{"exposure_norm": false}') == ("no-expnorm", {"exposure_norm": False})
    assert parse_method("abl-a:{\"models\": \"runs/abl_a/onnx\"}") == ("abl-a", {"models": "runs/abl_a/onnx"})
    assert parse_method("plain") == ("plain", {})
    with pytest.raises(ValueError):
        parse_method("bad:[1, 2]")
    names = [m[0] for m in build_methods(['x:{"gain": 2}', 'full:{"key_stride": 3}'])]
    assert names == ["f^-1(L)", "single frame", "ICAM only", "default", "x", "full"]
    assert dict(build_methods(['full:{"key_stride": 3}']))["full"] == {"key_stride": 3}
    assert [m[0] for m in build_methods(only=["full"])] == ["full"]


def test_evaluate_devset_end_to_end(devset, tmp_path, capsys):
    out = tmp_path / "eval"
    rows = ev.run(["--data", str(devset), "--out", str(out), "--no-cvvdp", "--frames", "3",
                    "--method", 'bright:{"gain": 2.0}'])
    stdout = capsys.readouterr().out
    assert "| seqa | f^-1(L) |" in stdout and "| mean | full |" in stdout and "| mean | default |" in stdout
    assert "n/a (RuntimeError: no trained models in vsvitm/models)" in stdout  # ICAM only raised
    assert {"mode": "linear", "num_refs": 6, "gain": 1.0} in CALLS
    assert {"mode": "icam", "num_refs": 0, "gain": 1.0} in CALLS
    assert {"mode": "temporal", "num_refs": 6, "gain": 2.0} in CALLS
    assert {"mode": "full", "num_refs": 6, "gain": 1.0} in CALLS

    by = {(r["sequence"], r["method"]): r for r in rows}
    assert len(rows) == 2 * 6 + 6
    lin, full = by[("seqa", "f^-1(L)")], by[("seqa", "full")]
    assert lin["frames"] == 3 and lin["s_per_frame"] >= 0
    # f^-1(L) is exact outside the clipped box, so all-pixel PSNR is finite and the OE part is worse
    assert np.isfinite(lin["pu21_psnr"]) and lin["pu21_psnr_oe"] < lin["pu21_psnr"]
    assert full["pu21_psnr_oe"] > 60 and full["log_l1_oe"] < 1e-3  # the stub recovers 4.0 (float16 gt)
    assert lin["log_l1_oe"] == pytest.approx(np.log(4.0 + 1e-4) - np.log(1.0 + 1e-4), rel=1e-3)
    assert full["tc"] < 1e-2 and lin["cvvdp_jod"] is None
    assert by[("seqa", "bright")]["pu21_psnr"] < lin["pu21_psnr"]
    assert by[("mean", "ICAM only")]["note"].startswith("n/a")
    assert by[("mean", "f^-1(L)")]["pu21_psnr"] == pytest.approx(
        (lin["pu21_psnr"] + by[("seqb", "f^-1(L)")]["pu21_psnr"]) / 2)

    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows) and csv_rows[0]["method"] == "f^-1(L)"
    assert "PU21-PSNR" in (out / "results.md").read_text()
    for name in ("seqa", "seqb"):
        sheet = cv2.imread(str(out / f"{name}.png"))
        assert sheet is not None and sheet.shape[1] > 3 * 160
        assert (out / f"{name}_zoom.png").exists()


def test_sequence_filter(devset, tmp_path, capsys):
    rows = ev.run(["--data", str(devset), "--out", str(tmp_path / "e"), "--no-cvvdp",
                    "--sequences", "seqb", "--only", "f^-1(L)"])
    assert [(r["sequence"], r["method"]) for r in rows] == [("seqb", "f^-1(L)"), ("mean", "f^-1(L)")]


def test_sheet_helpers():
    ldr, hdr = fake_sequence(t=3, h=40, w=64)
    assert pick_frame(np.zeros_like(ldr)) == 1
    ldr2 = ldr.copy()
    ldr2[2, 20:, :] = 255
    assert pick_frame(ldr2) == 2
    y0, y1, x0, x1 = zoom_box(ldr[0].max(-1) == 255)
    assert y0 <= 2 and y1 >= 6 - 1 and x0 <= 3 and x1 >= 8
    assert zoom_box(np.zeros((10, 10), bool)) is None
    d = display_hdr(np.array([[[4.0, 1.0, 0.0]]]), exposure=0.25)
    assert d.tolist() == [[[255, round(255 * 0.25 ** (1 / 2.2)), 0]]]


def test_ldr_video_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(vsvitm, "ITM", stub_itm, raising=False)
    vids = tmp_path / "vids"
    vids.mkdir()
    ldr, _ = fake_sequence(t=5, h=32, w=48)
    wr = cv2.VideoWriter(str(vids / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 24, (48, 32))
    if not wr.isOpened():
        pytest.skip("OpenCV cannot write MJPG here")
    for fr in ldr:
        wr.write(cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
    wr.release()
    frames, fps = load_video(vids / "clip.avi", 4)
    assert frames.shape == (4, 32, 48, 3) and fps == pytest.approx(24)
    out = tmp_path / "review"
    written = ev.run(["--ldr-videos", str(vids), "--out", str(out), "--frames", "4"])
    assert out / "clip.png" in written
    assert cv2.imread(str(out / "clip.png")) is not None


def test_clue_pixels_are_scored_on_their_own(tmp_path):
    """A sequence with a clue mask (camera pans) gets PU21-PSNR over those pixels: a prediction wrong only
    outside them scores inf there and finite over all pixels; one without a mask gets no clue score."""
    ldr, hdr = fake_sequence()
    clue = np.zeros(ldr.shape[:3], bool)
    clue[:, 2:4, 3:9] = True
    np.savez(tmp_path / "pan.npz", ldr=ldr, hdr=hdr, clue=clue)
    seq = load_sequence(tmp_path / "pan.npz")
    assert seq["clue"].shape == clue.shape and seq["clue"].dtype == bool
    pred = hdr.astype(np.float32).copy()
    pred[:, 8:, :] *= 2.0                        # wrong rows below the clue pixels
    m = compute_metrics(pred, seq["hdr"], seq["ldr"], use_cvvdp=False, clue=seq["clue"])
    assert m["pu21_psnr_clue"] == float("inf") and np.isfinite(m["pu21_psnr"])
    pred[:, 2, 3] *= 0.5
    m = compute_metrics(pred, seq["hdr"], seq["ldr"], use_cvvdp=False, clue=seq["clue"])
    assert np.isfinite(m["pu21_psnr_clue"])
    assert compute_metrics(pred, seq["hdr"], seq["ldr"], use_cvvdp=False)["pu21_psnr_clue"] is None
