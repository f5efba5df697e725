"""vsvitm.engine: the model folder and its manifests, allocator tuning, the pre-flow cache, the ICAM and
FCPM stages on both runners (host, and the device path with IO binding run on the CPU device), banding
(tiny graphs, CPU)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import vapoursynth as vs

import vsvitm
from vsvitm.vsnp import clip_from_array, clip_to_array, frame_to_array

from conftest import ROOT, moving_clip

core = vs.core
KW = dict(transfer="gamma2.2", threshold=0.95, exposure_norm=True)


@pytest.fixture(scope="module")
def src():
    return clip_from_array(moving_clip(30))


@pytest.fixture(scope="module")
def rgb8():
    return clip_from_array(moving_clip(8))


def on_device(eng):
    """The engine with its DeviceRunner on the CPU device: the CUDA path's loops, run here."""
    from vsvitm.engine.runner import DeviceRunner
    eng.runner = DeviceRunner(eng, "cpu")
    return eng


def test_banded_recurrence_matches_whole_frame(monkeypatch):
    """FCPM's recurrent steps and fuse run in horizontal bands on large frames (engine.BAND_PIXELS);
    the halo must cover the warp's vertical reach, or rows near a band edge read the wrong state."""
    from vsvitm import engine
    eng = engine.Engine(None, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                        cache_bytes=1 << 26)
    rng = np.random.default_rng(0)
    h, w = 600, 32

    def rnd(c):
        return rng.normal(0, 1, (1, c, h, w)).astype(np.float32)
    calls = []
    run = eng._run
    monkeypatch.setattr(eng, "_run", lambda g, feeds: calls.append(g) or run(g, feeds))
    for fy in (0.0, 17.6, -25.2):
        flow = np.concatenate([rnd(1) * 2, fy + rnd(1)], 1)
        feeds = {"x": rnd(3), "cur": np.abs(rnd(4)), "xn": rnd(3), "h": rnd(eng.hidden), "flow": flow}
        eng.band_pixels = 1 << 30
        whole = eng.run_banded("fcpm_back", feeds, flow)
        eng.band_pixels = h * w // 6
        calls.clear()
        banded = eng.run_banded("fcpm_back", feeds, flow)
        assert len(calls) == 6
        np.testing.assert_allclose(banded, whole, atol=1e-4)
        # the halo is what makes it exact: without the flow's reach the band edges are wrong
        assert np.abs(eng.run_banded("fcpm_back", feeds, None) - whole).max() > 1e-2
    feeds = {"hf": rnd(eng.hidden), "hb": rnd(eng.hidden), "x": rnd(3), "cur": np.abs(rnd(4))}
    eng.band_pixels = 1 << 30
    whole = eng.run_banded("fcpm_fuse", feeds)
    eng.band_pixels = h * w // 5
    np.testing.assert_allclose(eng.run_banded("fcpm_fuse", feeds), whole, atol=1e-5)


def test_banded_render_matches(src, tiny_models, monkeypatch):
    from vsvitm import engine
    whole = clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 14)
    monkeypatch.setattr(engine.core, "BAND_PIXELS", 48 * 64 // 3)
    banded = clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 14)
    np.testing.assert_allclose(banded, whole, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def gated_models(tiny_models, tmp_path_factory):
    """The tiny models with the merge exported with its evidence gate (same weights)."""
    import shutil
    pytest.importorskip("torch")
    from vsvitm.training.export import checkpoint_from_models, export_fcpm
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    gated = tmp_path_factory.mktemp("gated") / "models"
    shutil.copytree(tiny_models, gated)
    ck = checkpoint_from_models(tiny_models, "fcpm")
    m = FCPM(FCPMConfig.from_dict({**ck["config"], "evidence_gate": 10.0}))
    m.load_state_dict(ck["model"])
    export_fcpm(m, gated, size=(64, 64), fp16=False)
    return gated


def test_evidence_gate_through_the_plugin(src, tiny_models, gated_models, tmp_path):
    """A merge exported with the evidence gate gets each key's reference evidence from ICAM through
    VapourSynth: without references (num_refs=0) there is none and the result equals the ungated
    model's; with references it differs. An ICAM decode graph without the evidence output is refused."""
    import shutil
    gated = tmp_path / "gated"
    shutil.copytree(gated_models, gated)
    plain0 = clip_to_array(vsvitm.ITM(src, mode="full", num_refs=0, models=tiny_models), 0, 12)
    gated0 = clip_to_array(vsvitm.ITM(src, mode="full", num_refs=0, models=gated), 0, 12)
    np.testing.assert_allclose(gated0, plain0, rtol=1e-5, atol=1e-6)
    plain = clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 12)
    out = clip_to_array(vsvitm.ITM(src, mode="full", models=gated), 0, 12)
    assert np.isfinite(out).all() and np.abs(out - plain).max() > 1e-4
    # an ICAM decode graph of an older export (Y only, no evidence) is refused with the fix
    import onnx
    dec = onnx.load(str(gated / "icam_decode.onnx"))
    del dec.graph.output[1]
    onnx.save(dec, str(gated / "icam_decode.onnx"))
    with pytest.raises(ValueError, match="no reference evidence.*re-export"):
        vsvitm.ITM(src, mode="full", models=gated)


def test_icam_runs_once_per_key_frame(gated_models, monkeypatch):
    """Each key frame's ICAM result (and its evidence) is computed once, however many merges ask."""
    from vsvitm import engine
    calls = []
    icam = engine.Engine.icam
    monkeypatch.setattr(engine.Engine, "icam", lambda self, k, *a: calls.append(k) or icam(self, k, *a))
    old = core.num_threads
    core.num_threads = 4
    try:
        clip = vsvitm.ITM(clip_from_array(moving_clip(40)), mode="full", models=gated_models)
        futs = [clip.get_frame_async(n) for n in range(40)]
        assert all(np.isfinite(frame_to_array(f.result())).all() for f in futs)
    finally:
        core.num_threads = old
    assert sorted(calls) == sorted(set(calls)) and set(calls) == {3, 9, 15, 21, 27, 33, 39}


def test_large_merges_run_one_at_a_time(tiny_models, monkeypatch):
    """Above engine.MERGE_ALONE_PIXELS merges do not overlap (memory at 1080p), and results are the same."""
    import threading
    import time
    from vsvitm import engine
    src = clip_from_array(moving_clip(30))
    # set first: above the limit the CPU path also keeps the one-graph merge (engine._merge)
    monkeypatch.setattr(engine.fcpm, "MERGE_ALONE_PIXELS", 100)
    ref = clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 30)
    state = {"now": 0, "max": 0}
    guard = threading.Lock()
    run = engine.Engine._run

    def spy(self, graph, feeds):
        if not graph.startswith("fcpm_merge"):  # the one-graph merge, or the CPU path's two parts
            return run(self, graph, feeds)
        with guard:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.01)  # widen the window in which an overlap would show
        try:
            return run(self, graph, feeds)
        finally:
            with guard:
                state["now"] -= 1
    monkeypatch.setattr(engine.Engine, "_run", spy)
    old = core.num_threads
    core.num_threads = 4
    try:
        clip = vsvitm.ITM(src, mode="full", models=tiny_models)
        futs = [clip.get_frame_async(n) for n in range(30)]
        got = np.stack([frame_to_array(f.result()) for f in futs])
    finally:
        core.num_threads = old
    assert state["max"] == 1
    np.testing.assert_array_equal(got, ref)


def test_prewarped_steps_match_in_graph_warp(src, tiny_models, tmp_path, monkeypatch):
    """On the CPU the recurrent steps run as fcpm_back_cpu/fcpm_fwd_cpu with the state warped by
    OpenCV (engine.Engine.prewarp), and ICAM's reference step as icam_ref_a..d with its feature warps
    done by OpenCV (Engine.split_ref); a model folder without those files warps inside the graphs.
    Both give the same frames (the state is a half float either way)."""
    import shutil
    from vsvitm import engine
    eng = engine.Engine(tiny_models, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95,
                        exposure_norm=True, cache_bytes=1 << 26)
    assert eng.prewarp and eng.split_ref
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_models, legacy)
    for g in list(engine.PREWARP_GRAPHS.values()) + list(engine.SPLIT_REF):
        (legacy / f"{g}.onnx").unlink()
    engine.models.upgrade(legacy)  # the manifests list what is left
    old = engine.Engine(legacy, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                        cache_bytes=1 << 26)
    assert not old.prewarp and not old.split_ref
    fast = clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 14)
    slow = clip_to_array(vsvitm.ITM(src, mode="full", models=legacy), 0, 14)
    assert np.isfinite(fast).all()
    np.testing.assert_allclose(fast, slow, rtol=2e-3, atol=1e-4)
    # above engine.CPU_WARPS_MAX_PIXELS (memory at 1080p) the in-graph warps run: the legacy frames exactly
    calls = []
    run = engine.Engine._run
    monkeypatch.setattr(engine.models, "CPU_WARPS_MAX_PIXELS", 100)
    monkeypatch.setattr(engine.Engine, "_run", lambda self, g, feeds: calls.append(g) or run(self, g, feeds))
    big = clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 14)
    np.testing.assert_array_equal(big, slow)
    assert "fcpm_back" in calls and "icam_ref" in calls
    assert not any(g.endswith("_cpu") or g.startswith("fcpm_merge_") or g.startswith("icam_ref_") for g in calls)
    calls.clear()
    monkeypatch.setattr(engine.models, "CPU_WARPS_MAX_PIXELS", 1 << 20)
    clip_to_array(vsvitm.ITM(src, mode="full", models=tiny_models), 0, 4)
    assert "icam_ref_d" in calls and "icam_ref" not in calls


def test_prewarped_step_graph_equals_step_on_warped_state(tiny_models):
    """fcpm_back_cpu(x, cur, xn, warp(h, flow)) = fcpm_back(x, cur, xn, h, flow), flows of +-20 px."""
    from vsvitm import engine
    from vsvitm.flow import warp_planes
    eng = engine.Engine(tiny_models, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95,
                        exposure_norm=True, cache_bytes=1 << 26)
    rng = np.random.default_rng(3)
    h, w = 40, 56
    x, xn, cur = (rng.normal(0, 1, (1, 3, h, w)).astype(np.float32) for _ in range(3))
    cur = np.abs(np.concatenate([cur, cur[:, :1]], 1))
    state = rng.normal(0, 1, (1, eng.hidden, h, w)).astype(np.float32)
    flow = (rng.normal(0, 8, (1, 2, h, w))).astype(np.float32)
    for g, cpu in engine.PREWARP_GRAPHS.items():
        a = eng._run(g, {"x": x, "cur": cur, "xn": xn, "h": state, "flow": flow})[0]
        b = eng._run(cpu, {"x": x, "cur": cur, "xn": xn, "hw": warp_planes(state, flow, np.float32)})[0]
        np.testing.assert_allclose(b, a, atol=1e-4)


@pytest.mark.parametrize("h,w", [(48, 64), (240, 400)])
def test_preflow_keeps_each_frames_luma(tiny_models, h, w):
    """Engine.preflow = flow.align_pair of the two frames, with each frame's f^-1 and luma made once
    (a key frame takes part in 12 pairs): the frame functions are called once per frame. The cache
    holds each pair's flow at DIS's working size (a 400 px wide frame: 320), and a pair asked for
    again comes from it, upsampled to the same full-resolution flow."""
    from vsvitm import engine
    from vsvitm.curves import to_linear
    from vsvitm.flow import align_pair
    eng = engine.Engine(tiny_models, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95,
                        exposure_norm=True, cache_bytes=1 << 26)
    frames = moving_clip(6, h=h, w=w).astype(np.float32) / 255
    calls = []

    def code(n):
        return lambda: calls.append(n) or frames[n]
    for again in (False, True):
        for b in (1, 2, 3, 4):
            flow, e = eng.preflow(0, code(0), b, code(b))
            want_flow, want_e = align_pair(to_linear(frames[0]), to_linear(frames[b]), eng.flow_fn, True)
            np.testing.assert_array_equal(flow, want_flow)
            assert flow.shape == (h, w, 2) and e == want_e
    assert sorted(calls) == [0, 1, 2, 3, 4]
    sh, sw = eng.flow_fn.work_size(h, w)
    assert eng.flows.size_bytes <= 4 * (sh * sw * 2 * 4 + 256)


def test_icam_preflow_started_from_a_homography_when_the_manifest_says_so(tiny_models, tmp_path):
    """icam.json "preflow_start": "homography" (export_models.py --homography-preflow): ICAM's key -> reference
    pre-flows come from flow.HomographyDIS and have their own cache entries, FCPM's pairs keep plain DIS, and the
    ICAM result differs from the plain one; an unknown start is refused at load time with the fix."""
    import json
    import shutil

    import cv2

    from vsvitm import engine
    from vsvitm.curves import to_linear
    from vsvitm.flow import HomographyDIS, align_pair
    homog = tmp_path / "m"
    shutil.copytree(tiny_models, homog)
    meta = json.loads((homog / "icam.json").read_text())
    (homog / "icam.json").write_text(json.dumps({**meta, "preflow_start": "homography"}))
    kw = dict(need_fcpm=True, transfer="gamma2.2", threshold=0.95, exposure_norm=True, cache_bytes=1 << 26)
    plain, eng = engine.Engine(tiny_models, None, **kw), engine.Engine(homog, None, **kw)
    assert plain.icam_flow_fn is plain.flow_fn and not isinstance(plain.flow_fn, HomographyDIS)
    assert isinstance(eng.icam_flow_fn, HomographyDIS) and eng.icam_flow_fn.preset == eng.flow_fn.preset

    # a textured frame and the same frame moved by 24 px
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((120, 220)).astype(np.float32), (0, 0), 1.5)
    base = np.repeat(((base - base.min()) / np.ptp(base) * 0.8 + 0.1)[..., None], 3, -1)
    f0, f1 = base[:, 20:180], base[:, 44:204]          # f1(p) = f0(p + 24): key f0 -> ref f1 flow is -24 in x
    flow_h, e = eng._preflow(0, f0, 1, f1, icam=True)[:2]
    want = align_pair(to_linear(f0), to_linear(f1), eng.icam_flow_fn, True)[0]
    np.testing.assert_array_equal(flow_h, want)
    assert abs(np.median(flow_h[30:90, 40:120, 0]) + 24) < 1.0
    flow_p = eng.preflow(0, f0, 1, f1)[0]              # FCPM's view of the same pair: plain DIS, its own entry
    np.testing.assert_array_equal(flow_p, align_pair(to_linear(f0), to_linear(f1), eng.flow_fn, True)[0])
    assert eng.flow_key(0, 1, icam=True) != eng.flow_key(0, 1) and eng.flows.get(eng.flow_key(0, 1, icam=True))
    assert plain.flow_key(0, 1, icam=True) == plain.flow_key(0, 1)

    (homog / "icam.json").write_text(json.dumps({**meta, "preflow_start": "gma"}))
    with pytest.raises(ValueError, match="'gma'.*update vsvitm or re-export"):
        engine.Engine(homog, None, **kw)


def test_preflow_preset(tiny_models):
    """The plugin's pre-flow is DIS MEDIUM (BENCHMARKS.md); training keeps FAST (DISFlow's default,
    what the shipped networks saw); ITM(tuning={"preflow": "fast"}) reaches the engine; anything else is refused."""
    import cv2
    from vsvitm import engine
    from vsvitm.flow import DISFlow
    assert DISFlow().preset == cv2.DISOPTICAL_FLOW_PRESET_FAST
    kw = dict(need_fcpm=False, transfer="gamma2.2", threshold=0.95, exposure_norm=True, cache_bytes=1 << 26)
    assert engine.Engine(tiny_models, None, **kw).flow_fn.preset == cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    assert engine.Engine(tiny_models, None, preflow="fast", **kw).flow_fn.preset == cv2.DISOPTICAL_FLOW_PRESET_FAST
    clip = clip_from_array(moving_clip(20))
    a = frame_to_array(vsvitm.ITM(clip, mode="icam", ref_stride=5, num_refs=2, models=tiny_models).get_frame(10))
    b = frame_to_array(vsvitm.ITM(clip, mode="icam", ref_stride=5, num_refs=2, models=tiny_models,
                                  tuning={"preflow": "fast"}).get_frame(10))
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert not np.array_equal(a, b)  # another pre-flow, another alignment of the references
    for bad in ("slow", 2, None, ["fast"]):
        with pytest.raises(ValueError, match="preflow"):
            vsvitm.ITM(clip, tuning={"preflow": bad}, models=tiny_models)


def _copy_models(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def test_model_folder_missing(rgb8, tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained ICAM model.*TRAINING.md"):
        vsvitm.ITM(rgb8, models=tmp_path / "does" / "not" / "exist")
    from vsvitm.engine import MODEL_DIR
    if not (MODEL_DIR / "icam.json").exists():      # no shipped models: the default says how to get them
        with pytest.raises(FileNotFoundError, match="Reinstall vsvitm"):
            vsvitm.ITM(rgb8, backend=vsvitm.Backend.ORT_CPU())


@pytest.mark.parametrize("meta,match", [
    ({"format": 3, "modulus": 64}, "model format 3"),
    ({"format": 1, "modulus": 64}, "model format 1.*python -m vsvitm.engine "),
    ({"format": "2", "modulus": 64}, "model format '2'"),
    ({"modulus": 64}, "model format None"),
    ([1, 2, 3], "model format"),
    ({"format": 2, "graphs": {}}, "modulus"),
    ({"format": 2, "modulus": 0, "graphs": {}}, "modulus"),
    ({"format": 2, "modulus": "64", "graphs": {}}, "modulus"),
    ({"format": 2, "modulus": 64}, "graphs"),
    ({"format": 2, "modulus": 64, "graphs": {"icam_init": ["fp64"]}}, "graphs"),
])
def test_unexpected_manifest(rgb8, tiny_models, tmp_path, meta, match):
    d = _copy_models(tiny_models, tmp_path / "m")
    (d / "icam.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=match):
        vsvitm.ITM(rgb8, mode="icam", models=d)
    (d / "icam.json").write_text('{"format": 2, "modul')
    with pytest.raises(ValueError, match="unreadable"):
        vsvitm.ITM(rgb8, mode="icam", models=d)


def test_fcpm_manifest_damaged_or_missing(rgb8, tiny_models, tmp_path):
    d = _copy_models(tiny_models, tmp_path / "m")
    meta = json.loads((d / "fcpm.json").read_text())
    del meta["hidden"]
    (d / "fcpm.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="hidden"):
        vsvitm.ITM(rgb8, mode="full", models=d)
    (d / "fcpm.json").unlink()
    with pytest.raises(FileNotFoundError, match="no trained FCPM model"):
        vsvitm.ITM(rgb8, mode="full", models=d)
    for mode in ("icam", "temporal"):                                # they do not need FCPM
        assert np.isfinite(frame_to_array(vsvitm.ITM(rgb8, mode=mode, models=d).get_frame(0))).all()


def test_icam_io_binding_matches_plain_runs(tiny_models):
    """The IO-binding path (used on CUDA: ICAM's state stays on the device between reference steps)
    gives the plain path's result; checked here with the binding on the CPU device."""
    from vsvitm.engine import Engine
    eng = Engine(tiny_models, None, need_fcpm=False, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                 cache_bytes=1 << 24)
    assert eng.bind_device is None and eng.runner.device is None  # CPU sessions: plain runs
    rng = np.random.default_rng(0)
    code = [rng.random((40, 56, 3)).astype(np.float32) for _ in range(3)]
    refs = [(1, code[1]), (2, code[2])]
    y, ev = eng.icam(0, code[0], refs)
    on_device(eng)
    yb, evb = eng.icam(0, code[0], refs)
    np.testing.assert_allclose(yb, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(evb, ev, rtol=1e-6, atol=1e-6)
    assert y.shape == (40, 56, 3) and ev.shape == (40, 56)


def test_fcpm_io_binding_matches_plain_runs(tiny_models):
    """The IO-binding recurrence (used on CUDA: X^, network inputs and states stay on the device for a
    chunk, states rounded to half floats there) gives the plain path's result, fuse order included;
    checked with the binding on the CPU device."""
    from vsvitm import backends
    from vsvitm.engine import Engine
    eng = Engine(tiny_models, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                 cache_bytes=1 << 24)
    rng = np.random.default_rng(1)
    h, w = 40, 56
    hp, wp = eng.input(np.zeros((h, w, 3), np.float32)).shape[-2:]
    code = [rng.random((h, w, 3)).astype(np.float32) for _ in range(7)]
    xhat = [np.log(rng.random((1, 3, hp, wp)) * 2 + 1e-3).astype(np.float16) for _ in range(7)]
    ts = list(range(10, 17))
    plain = eng.propagate(ts, lambda i: code[i], lambda i: xhat[i], range(11, 16))
    on_device(eng)
    calls = []
    run_bound = backends.run_bound

    def spy(sess, feeds, device, device_id=0):
        calls.append(sum(isinstance(v, np.ndarray) and v.ndim == 4 and v.shape[1] in (3, 4, eng.hidden)
                         and v.shape[1] != 2 for v in feeds.values()))
        return run_bound(sess, feeds, device, device_id)
    backends.run_bound = spy
    try:
        bound = eng.propagate(ts, lambda i: code[i], lambda i: xhat[i], range(11, 16))
    finally:
        backends.run_bound = run_bound
    assert sorted(bound) == sorted(plain) == list(range(11, 16))
    for t in plain:
        assert bound[t].dtype == np.float16 and bound[t].shape == (h, w, 3)
        np.testing.assert_allclose(bound[t].astype(np.float32), plain[t].astype(np.float32), rtol=2e-3, atol=1e-4)
    # frames and states went to the device once: the only host arrays fed are the flows and the ends' zero
    # states (2 runs x 1 end), never X^, an input or a running state
    assert sum(calls) == 2


@pytest.mark.parametrize("evidence", [False, True])
def test_merge_io_binding_matches_plain_runs(tiny_models, tmp_path, evidence):
    """The IO-binding merge (CUDA: each key's input, result and evidence sent to the device once and
    brought to frame t's exposure there by prep.merge_prep_graph) gives the plain merge's result, with
    and without the evidence gate, fewer keys than the merge takes included; checked on the CPU device."""
    from vsvitm import backends
    from vsvitm.engine import Engine
    models = tiny_models
    if evidence:
        torch = pytest.importorskip("torch")
        from vsvitm.training.export import export_fcpm, export_icam
        from vsvitm.training.fcpm_net import FCPM, FCPMConfig
        from vsvitm.training.icam_net import ICAM, ICAMConfig
        torch.manual_seed(1)
        models = tmp_path / "m"
        export_icam(ICAM(ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2)), models, size=(64, 64), fp16=False)
        export_fcpm(FCPM(FCPMConfig(hidden=8, mask_ch=8, fallback=True, evidence_gate=10.0)), models, size=(64, 64), fp16=False)
    eng = Engine(models, None, need_fcpm=True, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                 cache_bytes=1 << 24)
    assert eng.merge_evidence == evidence
    rng = np.random.default_rng(2)
    h, w = 40, 56
    frames = {n: (rng.random((h, w, 3)) * np.float32(0.3 + 0.1 * (n % 5))).clip(0, 1).astype(np.float32) for n in range(20)}
    ys = {k: (frames[k] ** 2.2 * rng.uniform(1, 8, (h, w, 3))).astype(np.float16) for k in (0, 6, 12, 18)}
    evs = {k: rng.random((h, w)).astype(np.float32) for k in ys}

    def keys_of(ks):
        return [(k, lambda k=k: frames[k], lambda k=k: ys[k], lambda k=k: evs[k]) for k in ks]
    cases = [(7, [6, 12, 0, 18]), (8, [6, 12, 0]), (12, [12, 6, 18, 0])]
    plain = [eng.merge(t, frames[t], keys_of(ks)) for t, ks in cases]
    on_device(eng)
    sent = []
    to_device = backends.to_device
    backends.to_device = lambda a, *args: sent.append(a.shape) or to_device(a, *args)
    try:
        bound = [eng.merge(t, frames[t], keys_of(ks)) for t, ks in cases]
    finally:
        backends.to_device = to_device
    for p, b in zip(plain, bound):
        assert b.shape == p.shape and np.isfinite(b).all()
        np.testing.assert_allclose(b, p, rtol=1e-4, atol=1e-4)
    assert len(sent) == 4 * (3 if evidence else 2)  # four keys, each sent once


def test_merges_at_once(monkeypatch):
    """Large merges: one at a time on the CPU (host memory); CUDA_MERGES_AT_ONCE on CUDA, or
    VSVITM_CUDA_MERGES; a bad value says what it should be."""
    from vsvitm import engine
    monkeypatch.delenv("VSVITM_CUDA_MERGES", raising=False)
    assert engine.merges_at_once(None) == 1
    assert engine.merges_at_once("cuda") == engine.CUDA_MERGES_AT_ONCE >= 2
    monkeypatch.setenv("VSVITM_CUDA_MERGES", "7")
    assert engine.merges_at_once("cuda") == 7 and engine.merges_at_once(None) == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("VSVITM_CUDA_MERGES", bad)
        with pytest.raises(ValueError, match="VSVITM_CUDA_MERGES"):
            engine.merges_at_once("cuda")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
@pytest.mark.parametrize("env,want", [({}, "cores"), ({"MALLOC_ARENA_MAX": "4"}, 0),
                                      ({"VSVITM_MALLOC_ARENA_MAX": "0"}, 0), ({"VSVITM_MALLOC_ARENA_MAX": "3"}, 3)])
def test_malloc_arena_cap(env, want):
    """engine.limit_malloc_arenas: caps glibc's arenas at the core count (>= 2) unless the user chose
    (MALLOC_ARENA_MAX) or turned it off (VSVITM_MALLOC_ARENA_MAX=0); once per process."""
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "VSVITM_MALLOC_ARENA_MAX")}
    code = "from vsvitm.engine import limit_malloc_arenas as f; print(f(), f())"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    expect = max(2, os.cpu_count() or 2) if want == "cores" else want
    assert out == [str(expect)] * 2


_MMAP_PROBE = """
import ctypes, numpy as np
from vsvitm.engine import mmap_large_blocks as f
class M(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
info = ctypes.CDLL("libc.so.6").mallinfo2
info.restype = M
set_to = f(), f()
# glibc's dynamic threshold rises to the size of a freed mmapped block: after a 8 MB block is freed a
# 2 MB block comes from the heap, unless the threshold was fixed below it
a = np.ones(8 << 18, np.float32); del a
before = info().hblkhd  # other mmapped blocks of the process do not count
b = np.ones(2 << 18, np.float32)
print(*set_to, int(info().hblkhd - before >= (2 << 20)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mmap threshold")
@pytest.mark.parametrize("env,want", [({}, "default"), ({"MALLOC_MMAP_THRESHOLD_": "4194304"}, 0),
                                      ({"VSVITM_MMAP_THRESHOLD": "0"}, 0), ({"VSVITM_MMAP_THRESHOLD": "1500000"}, 1500000)])
def test_mmap_threshold(env, want):
    """engine.mmap_large_blocks: fixes glibc's mmap threshold (1 MiB by default) unless the user chose
    (MALLOC_MMAP_THRESHOLD_) or turned it off (VSVITM_MMAP_THRESHOLD=0); once per process; a 2 MB
    block is then mmapped even after a larger one was freed."""
    from vsvitm import engine
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "VSVITM_MMAP_THRESHOLD")}
    out = subprocess.run([sys.executable, "-c", _MMAP_PROBE], env={**base, **env}, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    expect = engine.MMAP_THRESHOLD if want == "default" else want
    mmapped = "0" if env.get("MALLOC_MMAP_THRESHOLD_") == "4194304" or want == 0 else "1"
    assert out == [str(expect), str(expect), mmapped]


@pytest.mark.parametrize("big", [False, True])
def test_mmap_threshold_set_for_large_cpu_renders(tiny_models, monkeypatch, big):
    """ITM fixes the mmap threshold only for CPU renders from engine.TRIM_PIXELS on."""
    from vsvitm import engine
    calls = []
    monkeypatch.setattr(engine.allocator, "TRIM_PIXELS", 48 * 64 if big else 1 << 20)
    monkeypatch.setattr(engine.allocator, "mmap_large_blocks", lambda: calls.append(1))
    vsvitm.ITM(clip_from_array(moving_clip(8)), models=tiny_models, backend=vsvitm.Backend.ORT_CPU())
    assert calls == ([1] if big else [])


@pytest.mark.parametrize("big", [False, True])
def test_heap_trimmed_after_large_stages(tiny_models, monkeypatch, big):
    """From engine.TRIM_PIXELS on, freed heap goes back to the system (malloc_trim) after every key
    frame's ICAM and every merge as well as after each chunk's recurrence; below it only after the
    recurrence (a trim makes the next graph run fault its pages in again)."""
    from vsvitm import engine
    calls = {"trim": 0, "icam": 0, "merge": 0, "propagate": 0}
    monkeypatch.setattr(engine.allocator, "TRIM_PIXELS", 48 * 64 if big else 1 << 20)
    monkeypatch.setattr(engine.allocator, "trim_heap", lambda: calls.__setitem__("trim", calls["trim"] + 1))
    for name in ("icam", "merge", "propagate"):
        def counted(self, *a, _f=getattr(engine.Engine, name), _n=name, **kw):
            calls[_n] += 1
            return _f(self, *a, **kw)
        monkeypatch.setattr(engine.Engine, name, counted)
    out = vsvitm.ITM(clip_from_array(moving_clip(24)), mode="full", models=tiny_models, tuning={"chunk": 12})   # two chunks
    for n in range(24):
        out.get_frame(n)
    assert calls["icam"] >= 4 and calls["merge"] >= 24 and calls["propagate"] >= 2
    want = calls["propagate"] + (calls["icam"] + calls["merge"] if big else 0)
    assert calls["trim"] == want, calls


@pytest.mark.parametrize("graph", ["icam_ref", "fcpm_fuse"])
def test_broken_graph_files(rgb8, tiny_models, tmp_path, graph):
    d = _copy_models(tiny_models, tmp_path / "m")
    (d / f"{graph}.onnx").write_bytes(b"")
    with pytest.raises(RuntimeError, match=f"could not load .*{graph}.onnx"):
        vsvitm.ITM(rgb8, mode="full", models=d)
    shutil.copy(d / "icam_init.onnx", d / f"{graph}.onnx")          # files mixed up: a valid, wrong graph
    with pytest.raises(ValueError, match=f"is not a {graph} graph"):
        vsvitm.ITM(rgb8, mode="full", models=d)
    (d / f"{graph}.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=f"{graph}.onnx is missing"):
        vsvitm.ITM(rgb8, mode="full", models=d)


def test_blend_and_finite():
    """Eq. 1 computed in place: (1 - a) lin + a max(Y, lin), finite, Y in half floats too."""
    from vsvitm.curves import overexposure_mask, to_linear
    from vsvitm.engine import Y_MAX, Engine
    rng = np.random.default_rng(4)
    code = rng.random((6, 7, 3)).astype(np.float32)
    y = (rng.random((6, 7, 3)) * 8).astype(np.float16)
    eng = Engine.__new__(Engine)
    eng.transfer, eng.threshold = "gamma2.2", 0.95
    lin, a = to_linear(code), overexposure_mask(code)
    np.testing.assert_allclose(eng.blend(code, y), (1 - a) * lin + a * np.maximum(y.astype(np.float32), lin),
                               rtol=1e-6, atol=1e-7)
    z = np.array([np.nan, np.inf, -np.inf, -1.0, 1e30, 3.0], np.float32)
    np.testing.assert_array_equal(Engine.finite(z), [0, Y_MAX, 0, 0, Y_MAX, 3])
    with np.errstate(over="ignore"):
        assert Engine.finite(z.astype(np.float16)).dtype == np.float32
