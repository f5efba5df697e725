"""Fast tests of scripts/evaluate.py with a tiny fake sequence and a stub vsvitm.ITM."""
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth")

import vsvitm  # noqa: E402
from vsvitm.curves import overexposure_mask, to_linear  # noqa: E402
from vsvitm.vsnp import clip_from_array, clip_to_array  # noqa: E402

from conftest import ROOT, load_script  # noqa: E402

ev = load_script()
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
    assert ev.parse_method('no-expnorm:{"exposure_norm": false}') == ("no-expnorm", {"exposure_norm": False})
    assert ev.parse_method("abl-a:{\"models\": \"runs/abl_a/onnx\"}") == ("abl-a", {"models": "runs/abl_a/onnx"})
    assert ev.parse_method("plain") == ("plain", {})
    with pytest.raises(ValueError):
        ev.parse_method("bad:[1, 2]")
    names = [m[0] for m in ev.build_methods(['x:{"gain": 2}', 'full:{"key_stride": 3}'])]
    assert names == ["f^-1(L)", "single frame", "ICAM only", "default", "x", "full"]
    assert dict(ev.build_methods(['full:{"key_stride": 3}']))["full"] == {"key_stride": 3}
    assert [m[0] for m in ev.build_methods(only=["full"])] == ["full"]


def test_evaluate_devset_end_to_end(devset, tmp_path, capsys):
    out = tmp_path / "eval"
    rows = ev.main(["--data", str(devset), "--out", str(out), "--no-cvvdp", "--frames", "3",
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
    rows = ev.main(["--data", str(devset), "--out", str(tmp_path / "e"), "--no-cvvdp",
                    "--sequences", "seqb", "--only", "f^-1(L)"])
    assert [(r["sequence"], r["method"]) for r in rows] == [("seqb", "f^-1(L)"), ("mean", "f^-1(L)")]


def test_main_patched_splits_own_and_evaluate_arguments(devset, tmp_path, capsys):
    """Experiment scripts (scripts/*_experiment.py): their own options before '--', evaluate's after;
    the patch is installed before anything renders."""
    seen = []
    rows = ev.main_patched("doc", lambda ap: ap.add_argument("--tau", type=float, required=True),
                           lambda a: seen.append(a.tau),
                           ["--tau", "0.5", "--", "--data", str(devset), "--out", str(tmp_path / "e"), "--no-cvvdp",
                            "--sequences", "seqb", "--only", "f^-1(L)"])
    assert seen == [0.5]
    assert [(r["sequence"], r["method"]) for r in rows] == [("seqb", "f^-1(L)"), ("mean", "f^-1(L)")]


def test_sheet_helpers():
    ldr, hdr = fake_sequence(t=3, h=40, w=64)
    assert ev.pick_frame(np.zeros_like(ldr)) == 1
    ldr2 = ldr.copy()
    ldr2[2, 20:, :] = 255
    assert ev.pick_frame(ldr2) == 2
    y0, y1, x0, x1 = ev.zoom_box(ldr[0].max(-1) == 255)
    assert y0 <= 2 and y1 >= 6 - 1 and x0 <= 3 and x1 >= 8
    assert ev.zoom_box(np.zeros((10, 10), bool)) is None
    d = ev.display_hdr(np.array([[[4.0, 1.0, 0.0]]]), exposure=0.25)
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
    frames, fps = ev.load_video(vids / "clip.avi", 4)
    assert frames.shape == (4, 32, 48, 3) and fps == pytest.approx(24)
    out = tmp_path / "review"
    written = ev.main(["--ldr-videos", str(vids), "--out", str(out), "--frames", "4"])
    assert out / "clip.png" in written
    assert cv2.imread(str(out / "clip.png")) is not None


def test_benchmark_arch_widths():
    bm = load_script("benchmark")
    assert bm.random_arch(None) == {} and bm.random_arch("") == {}
    assert bm.random_arch('{"icam": {"c1": 16}, "fcpm": {"hidden": 8}}') == {"icam": {"c1": 16}, "fcpm": {"hidden": 8}}
    for bad, says in (("{c1: 16}", "not JSON"), ('{"unet": {}}', "expected"), ('{"icam": {"width": 3}}', "fields: c1")):
        with pytest.raises(SystemExit, match=says):
            bm.random_arch(bad)


def test_benchmark_describes_cpu_vector_extensions():
    """Hosts named alike ("AMD EPYC") ran the same graphs at different speeds: the header tells them apart."""
    bm = load_script("benchmark")
    zen3 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
            "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: avx512f\n")
    assert bm.cpu_description(zen3) == "AMD EPYC (family 25, model 1; AVX2, no AVX-512)"
    zen4 = zen3.replace("avx2 fma", "avx2 fma avx512f avx512_vnni").replace("model\t\t: 1", "model\t\t: 17")
    assert bm.cpu_description(zen4) == "AMD EPYC (family 25, model 17; AVX2, AVX-512, AVX-512 VNNI)"
    assert bm.cpu_description("") == ""


def test_benchmark_counts_io_bound_runs_by_graph(monkeypatch):
    """benchmark.py's per-graph counter times IO-bound runs (CUDA's path) and names the engine's own small
    graphs (round_half, merge_prep) instead of lumping them together."""
    import numpy as np

    import vsvitm
    from vsvitm import backends, engine, flow
    from vsvitm.prep import merge_prep_graph
    for mod, name in ((backends, "session"), (backends, "run"), (backends, "run_bound"), (backends, "aux_session"),
                      (flow.DISFlow, "calc"), (flow.HomographyDIS, "calc"), (engine.Engine, "_run_banded"),
                      (engine, "warp_planes")):
        monkeypatch.setattr(mod, name, getattr(mod, name))  # restored after the test: install() patches them
    bm = load_script("benchmark")
    counter = bm._Counter()
    counter.install()
    counter.on = True
    be = vsvitm.Backend.ORT_CPU()
    x = backends.to_device(np.ones((1, 2, 3, 4), np.float32), "cpu")
    backends.round_half(x, be)
    backends.round_half(x, be)
    prep = backends.aux_session("merge_prep_1_0", lambda: backends.model_bytes(merge_prep_graph(1, False, 100.0)), be)
    one = np.ones((1,), np.float32)
    backends.run_bound(prep, {"k0": np.ones((1, 4, 2, 2), np.float32), "y0": np.ones((1, 3, 2, 2), np.float32),
                              "s0": one, "e0": one}, "cpu")
    assert counter.stats["round_half"][0] == 2 and counter.stats["merge_prep"][0] == 1
    y = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    flow.HomographyDIS("medium").calc(y, y)   # ICAM's homography-started pre-flows have their own column
    flow.DISFlow("medium").calc(y, y)
    assert counter.stats["dis_flow_homography"][0] == 1 and counter.stats["dis_flow"][0] == 1


def test_pyspy_profile_charges_samples_to_the_innermost_engine_part():
    """scripts/pyspy_profile.py: each sample goes to the innermost engine function named in PARTS (a warp
    called from inside a graph-running helper is a warp), its leaf is the innermost Python frame, and the
    weights count."""
    pp = load_script("pyspy_profile")
    frames = [{"name": n, "file": f"/x/{n}.py", "line": i} for i, n in
              enumerate(["ITM.render", "Engine._ref_split", "Engine._run", "Session.run", "warp_planes", "remap",
                         "other", "process 7:\"python x.py\"", "Engine._run_banded.<locals>.rows"])]
    ss = {"shared": {"frames": frames}, "profiles": [
        {"samples": [[0, 1, 2, 3], [0, 1, 4, 5], [0, 6], [], [7], [7, 0, 8]], "weights": [3, 2, 1, 7, 5, 0.5]},
        {"samples": [[0, 1, 2, 3]], "weights": [4]}]}
    total, leaves, parts = pp.summarise(ss, top=2)
    assert total == 10.5   # neither the empty stack nor a bare process frame is running Python
    # methods match by their last name; "rows" (a closure inside _run_banded) is in no part
    assert dict(parts) == {"ONNX graph runs": 7, "OpenCV warps between graphs": 2, "other Python": 1.5}
    assert leaves == [("Session.run (Session.run.py:3)", 7), ("remap (remap.py:5)", 2)]
    assert "| `ONNX graph runs` | 7.0 | 66.7 % |" in pp.table(parts, total, "part")


def test_demo_pushed_clip_swings_exposure_and_clips_like_a_camera():
    """scripts/demo.py's recovery sheet: the sample brightened by a slow exposure swing (push_stops), in
    linear light, clipped at 1.0 and rounded to 8 bits, so highlights clip in some frames only."""
    import vapoursynth as vs
    demo = load_script("demo")
    core = vs.core
    assert demo.push_stops(0) == pytest.approx(1.5) and demo.push_stops(15) == pytest.approx(2.5)
    assert demo.push_stops(45) == pytest.approx(0.5)
    grey = core.std.BlankClip(width=8, height=4, format=vs.RGBS, length=60, color=[0.5, 0.25, 0.1])
    ldr = demo.pushed_clip(core, grey)
    assert ldr.format.id == vs.RGB24
    for n in (0, 15, 45):
        got = np.asarray(ldr.get_frame(n)[0])[0, 0], np.asarray(ldr.get_frame(n)[2])[0, 0]
        want = [min(1.0, c * 2 ** (demo.push_stops(n) / 2.2)) for c in (0.5, 0.1)]
        assert got == (round(want[0] * 255), round(want[1] * 255))
    assert np.asarray(ldr.get_frame(15)[0])[0, 0] == 255 and np.asarray(ldr.get_frame(45)[0])[0, 0] < 255


def test_homography_flow_finds_a_large_camera_motion():
    """flow.homography_flow: a homography from feature matches gives DIS
    a start it cannot find itself (a 40 px shift of a textured image), and the flow is None where nothing matches."""
    import cv2

    from vsvitm.flow import homography_flow
    rng = np.random.default_rng(0)
    a = (cv2.GaussianBlur(rng.random((200, 300)).astype(np.float32), (0, 0), 1.5) * 255).astype(np.uint8)
    H = np.float64([[1, 0, 40], [0, 1, -12], [0, 0, 1]])   # b(p + (40, -12)) = a(p)
    b = cv2.warpPerspective(a, H, (300, 200))
    f = homography_flow(a, b)
    assert f is not None and f.shape == (200, 300, 2)
    assert np.allclose(f[50:150, 50:200].reshape(-1, 2).mean(0), [40, -12], atol=0.5)
    plain = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    assert abs(plain[50:150, 50:200, 0].mean() - 40) > 5           # DIS alone misses it: why the homography is there
    assert homography_flow(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)) is None


def test_homography_field_and_kept_key_features_change_no_flow():
    """flow.homography_field (broadcast) gives the numbers of the full-grid product, and
    HomographyDIS's kept key features (a key frame's image is the same in all its pairs) give the flow a fresh
    object gives, pair after pair."""
    import cv2

    from vsvitm.flow import HomographyDIS, homography_field
    H = np.array([[1.02, 0.01, 5.5], [-0.02, 0.99, -3.25], [1e-4, -2e-4, 1.0]])
    h, w = 90, 160
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    P = np.stack([xs, ys, np.ones_like(xs)], -1) @ H.T
    grid = np.stack([P[..., 0] / P[..., 2] - xs, P[..., 1] / P[..., 2] - ys], -1).astype(np.float32)
    np.testing.assert_allclose(homography_field(H, h, w), grid, rtol=0, atol=1e-5)
    assert homography_field(np.array([[1.0, 0, 0], [0, 1, 0], [1.0, 0, -10]]), h, w) is None   # z = 0 at x = 10

    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur(rng.random((160, 260)).astype(np.float32), (0, 0), 1.5)
    base = (base - base.min()) / np.ptp(base)
    key = base[20:140, 30:230]
    refs = [base[20 + dy:140 + dy, 30 + dx:230 + dx] for dy, dx in ((3, 12), (-8, 25), (10, -20))]
    kept = HomographyDIS("medium")
    for r in refs:
        np.testing.assert_array_equal(kept.calc(key, r), HomographyDIS("medium").calc(key, r))
    assert len(kept._kept) == 1    # one key image, its features made once


def test_benchmark_describes_weighted_soups():
    """The shipped ICAM is a weighted soup (a soup counted twice, plus a fine-tune): the header says so, not
    "mean weights of 2 fine-tunes"."""
    bm = load_script("benchmark")
    assert bm.soup_description([{"checkpoint": "a"}, {"checkpoint": "b"}]) == "mean weights of 2 checkpoints"
    shipped = [{"checkpoint": "runs/shipped_H2/icam.pt", "weight": 2.0}, {"checkpoint": "runs/icam_s33nh/last.pt", "weight": 1.0}]
    assert bm.soup_description(shipped) == "weighted mean of 2 checkpoints (weights 2 : 1)"


def test_clue_pixels_are_scored_on_their_own(tmp_path):
    """A sequence with a clue mask (camera pans) gets PU21-PSNR over those pixels: a prediction wrong only
    outside them scores inf there and finite over all pixels; one without a mask gets no clue score."""
    ldr, hdr = fake_sequence()
    clue = np.zeros(ldr.shape[:3], bool)
    clue[:, 2:4, 3:9] = True
    np.savez(tmp_path / "pan.npz", ldr=ldr, hdr=hdr, clue=clue)
    seq = ev.load_sequence(tmp_path / "pan.npz")
    assert seq["clue"].shape == clue.shape and seq["clue"].dtype == bool
    pred = hdr.astype(np.float32).copy()
    pred[:, 8:, :] *= 2.0                        # wrong rows below the clue pixels
    m = ev.compute_metrics(pred, seq["hdr"], seq["ldr"], use_cvvdp=False, clue=seq["clue"])
    assert m["pu21_psnr_clue"] == float("inf") and np.isfinite(m["pu21_psnr"])
    pred[:, 2, 3] *= 0.5
    m = ev.compute_metrics(pred, seq["hdr"], seq["ldr"], use_cvvdp=False, clue=seq["clue"])
    assert np.isfinite(m["pu21_psnr_clue"])
    assert ev.compute_metrics(pred, seq["hdr"], seq["ldr"], use_cvvdp=False)["pu21_psnr_clue"] is None
