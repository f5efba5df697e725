"""The VapourSynth filter: modes, props, determinism, scene cuts, errors (tiny graphs, CPU)."""
import random
import subprocess
import sys

import numpy as np
import pytest
import vapoursynth as vs

import vsvitm
from vsvitm.itm import as_list
from vsvitm.vsnp import clip_from_array, clip_to_array, frame_to_array

from conftest import moving_clip, vspipe_ok

core = vs.core


def render(clip, order):
    return {n: frame_to_array(clip.get_frame(n)) for n in order}


@pytest.fixture(scope="module")
def src():
    return clip_from_array(moving_clip(30))


@pytest.mark.parametrize("mode", ["linear", "icam", "full", "temporal"])
def test_modes_give_finite_linear_rgb(src, tiny_models, mode):
    out = vsvitm.ITM(src, mode=mode, models=tiny_models)
    assert out.format.id == vs.RGBS and out.num_frames == src.num_frames
    arr = clip_to_array(out, 0, 8)
    assert np.isfinite(arr).all() and arr.min() >= 0
    p = out.get_frame(3).props
    assert p["_Transfer"] == 8 and p["_Primaries"] == 1 and p["_Matrix"] == 0
    lin = clip_to_array(vsvitm.ITM(src, mode="linear"), 0, 8)
    code = clip_to_array(src, 0, 8).astype(np.float32) / 255
    np.testing.assert_allclose(lin, code ** 2.2, atol=1e-5)
    if mode != "linear":
        # eq. 1: untouched below the over-exposure threshold, never darker than f^-1(L)
        below = code.max(-1) < 0.95
        np.testing.assert_allclose(arr[below], lin[below], atol=1e-5)
        assert (arr >= lin - 1e-5).all()


@pytest.mark.parametrize("mode", ["linear", "icam", "full", "temporal"])
def test_source_props_reach_the_output(src, tiny_models, mode):
    """The plugin holds its frames as RGB48 and makes output frames from blank RGBS ones: each output
    frame still carries its own source frame's props (timestamps, scene changes, a user's own)."""
    tagged = core.std.ModifyFrame(src, src, lambda n, f: _tag(n, f))
    out = vsvitm.ITM(tagged, mode=mode, models=tiny_models)
    for n in (0, 4, 9):
        p = out.get_frame(n).props
        assert p["MyFrame"] == n and p["_DurationNum"] == 1 + n and p["_Transfer"] == 8


def _tag(n, f):
    out = f.copy()
    out.props["MyFrame"] = n
    out.props["_DurationNum"] = 1 + n
    return out


def test_rgbh_output(src, tiny_models):
    out = vsvitm.ITM(src, mode="icam", fp16_output=True, models=tiny_models)
    assert out.format.id == vs.RGBH
    assert np.isfinite(frame_to_array(out.get_frame(0)).astype(np.float32)).all()


def test_key_and_reference_props(src, tiny_models):
    out = vsvitm.ITM(src, key_stride=6, num_refs=4, models=tiny_models)
    p3, p4 = out.get_frame(3).props, out.get_frame(4).props
    assert p3["VSVITM_KeyFrame"] == 1 and p4["VSVITM_KeyFrame"] == 0
    assert as_list(p3["VSVITM_References"]) == [18]            # 3 + 15 (3 - 15 is outside the clip)
    assert as_list(p4["VSVITM_Keys"]) == [3, 9]                # the key frames before and after
    assert as_list(p3["VSVITM_Keys"]) == [3]
    assert 0.0 <= p4["VSVITM_Confidence"] <= 1.0
    full = vsvitm.ITM(src, mode="full", models=tiny_models)
    assert as_list(full.get_frame(4).props["VSVITM_Keys"]) == [3, 9, 15, 21, 27]
    # the temporal mode's own defaults: a key frame every 12 frames, 2 references each way
    p = vsvitm.ITM(clip_from_array(moving_clip(60)), models=tiny_models).get_frame(30).props
    assert p["VSVITM_KeyFrame"] == 1 and as_list(p["VSVITM_References"]) == [15, 45, 0]
    assert as_list(vsvitm.ITM(src, models=tiny_models).get_frame(10).props["VSVITM_Keys"]) == [6, 18]


def test_default_reference_count(tiny_models):
    """4 references each way by default (the paper's 6 scored the same on the validation set and
    runs 12 % slower: BENCHMARKS.md); num_refs=6 gives the paper's 12."""
    clip = clip_from_array(moving_clip(200))
    p = vsvitm.ITM(clip, mode="icam", models=tiny_models).get_frame(99).props
    assert as_list(p["VSVITM_References"]) == [84, 114, 69, 129, 54, 144, 39, 159]
    p6 = vsvitm.ITM(clip, mode="icam", num_refs=6, models=tiny_models).get_frame(99).props
    assert len(as_list(p6["VSVITM_References"])) == 12


def test_default_chunk_by_size(src):
    """Tuning(chunk=None, margin=None): 24 and 3 below 1 MP, 12 and 6 from 1 MP on (memory); the default
    renders as those. The shipped models: the tiny random ones give the same frames for both here.
    Another chunking (12, with a margin of 1) gives other frames, so the equality says something. (With
    a margin of 6 the shipped FCPM, whose 8-channel state forgets faster, gives the same frames here.)"""
    from vsvitm.itm import chunk_and_margin
    assert chunk_and_margin(512, 512) == (24, 3) and chunk_and_margin(1280, 720) == (24, 3)
    assert chunk_and_margin(1920, 1080) == (12, 6) and chunk_and_margin(1024, 1024) == (12, 6)
    a, b, c = (vsvitm.ITM(src, mode="full", tuning=kw) for kw in ({}, {"chunk": 24, "margin": 3}, {"chunk": 12, "margin": 1}))
    frames = range(6, 13)   # frame 12 starts a chunk of 12; the recurrences reach these from other ends
    ra, rb, rc = ([frame_to_array(x.get_frame(n)) for n in frames] for x in (a, b, c))
    for x, y in zip(ra, rb):
        np.testing.assert_array_equal(x, y)
    assert any(np.abs(x - y).max() > 0 for x, y in zip(ra, rc))


def test_default_falls_back_to_single_frame_without_evidence():
    """Where no other frame measured what a frame clipped, the default's output is single-frame ICAM's,
    exactly: here every frame is the same picture, so every reference is clipped where the key is.
    With frames that do see the clipped region (darker exposures), the default differs there."""
    still = np.repeat(moving_clip(1)[:1], 24, axis=0)
    assert (still.max(-1) >= 250).any()
    single = clip_to_array(vsvitm.ITM(clip_from_array(still), mode="icam", num_refs=0), 0, 24)
    default = clip_to_array(vsvitm.ITM(clip_from_array(still)), 0, 24)
    # (a reference at the same exposure confirms channels just below the clip level: float rounding there)
    np.testing.assert_allclose(default, single, rtol=1e-6, atol=1e-6)
    moving = moving_clip(40)
    single = clip_to_array(vsvitm.ITM(clip_from_array(moving), mode="icam", num_refs=0), 15, 25)
    default = clip_to_array(vsvitm.ITM(clip_from_array(moving)), 15, 25)
    clipped = moving[15:25].max(-1) >= 250
    assert np.abs(default - single)[clipped].max() > 1e-3
    np.testing.assert_array_equal(default[~clipped & (moving[15:25].max(-1) < 230)],
                                  single[~clipped & (moving[15:25].max(-1) < 230)])


def test_num_refs_zero_is_single_frame(src, tiny_models):
    a = vsvitm.ITM(src, mode="icam", num_refs=0, models=tiny_models)
    assert as_list(a.get_frame(10).props["VSVITM_References"]) == [-1]
    # single frame: the result of frame 10 does not change when other frames change
    other = moving_clip(30)
    other[np.arange(30) != 10] //= 2      # every other frame darker: no cut, different references
    b = vsvitm.ITM(clip_from_array(other), mode="icam", num_refs=0, models=tiny_models)
    np.testing.assert_array_equal(frame_to_array(a.get_frame(10)), frame_to_array(b.get_frame(10)))
    c = vsvitm.ITM(clip_from_array(other), mode="icam", models=tiny_models)  # with references it does
    assert not np.array_equal(frame_to_array(a.get_frame(10)), frame_to_array(c.get_frame(10)))


@pytest.mark.parametrize("threads,yuv", [(1, False), (4, False), (4, True)])
def test_request_order_does_not_change_results(tiny_models, threads, yuv):
    """Frames come out the same whatever order they are requested in; yuv: an 8-bit YUV source, whose
    references the plugin holds as RGB24 next to the RGB48 form of the same frames."""
    src = clip_from_array(moving_clip(40))
    if yuv:
        src = core.resize.Bicubic(src, format=vs.YUV420P8, matrix_s="709")
    old = core.num_threads
    core.num_threads = threads
    try:
        ref = render(vsvitm.ITM(src, models=tiny_models), range(40))
        rev = render(vsvitm.ITM(src, models=tiny_models), range(39, -1, -1))
        order = list(range(40))
        random.Random(1).shuffle(order)
        rnd = render(vsvitm.ITM(src, models=tiny_models), order)
        # many frames in flight at once
        par = vsvitm.ITM(src, models=tiny_models)
        futs = {n: par.get_frame_async(n) for n in order}
        par_res = {n: frame_to_array(f.result()) for n, f in futs.items()}
    finally:
        core.num_threads = old
    for n in range(40):
        np.testing.assert_array_equal(ref[n], rev[n])
        np.testing.assert_array_equal(ref[n], rnd[n])
        np.testing.assert_array_equal(ref[n], par_res[n])


def test_scene_cut_bounds_references(tiny_models):
    src = clip_from_array(moving_clip(60, cut_at=30))
    out = vsvitm.ITM(src, key_stride=6, models=tiny_models)
    for k in (21, 27, 33, 39):
        refs = [r for r in as_list(out.get_frame(k).props["VSVITM_References"]) if r >= 0]
        assert all((r < 30) == (k < 30) for r in refs), (k, refs)
    assert as_list(out.get_frame(28).props["VSVITM_Keys"]) == [27]          # not 33: other shot
    full = vsvitm.ITM(src, mode="full", models=tiny_models)
    assert as_list(full.get_frame(28).props["VSVITM_Keys"]) == [3, 9, 15, 21, 27]


def test_scene_change_props_are_used(tiny_models):
    src = clip_from_array(moving_clip(40))
    marked = core.std.SetFrameProps(src[20:], _SceneChangePrev=1)
    src = src[:20] + core.std.SetFrameProps(marked[:1], _SceneChangePrev=1) + marked[1:].std.SetFrameProps(_SceneChangePrev=0)
    out = vsvitm.ITM(src, models=tiny_models)
    refs = as_list(out.get_frame(27).props["VSVITM_References"])
    assert refs == [-1] or min(refs) >= 20


@pytest.mark.skipif(not vspipe_ok(), reason="vspipe not usable (run `vapoursynth config` once)")
def test_vspipe_segment_matches_api(tmp_path, tiny_models):
    frames = moving_clip(30)
    np.save(tmp_path / "frames.npy", frames)
    script = tmp_path / "s.vpy"
    script.write_text(
        "import numpy as np, vsvitm\n"
        "from vsvitm.vsnp import clip_from_array\n"
        f"c = clip_from_array(np.load(r'{tmp_path / 'frames.npy'}'))\n"
        f"vsvitm.ITM(c, models=r'{tiny_models}').set_output()\n")
    exe = str(__import__("pathlib").Path(sys.executable).with_name("vspipe"))
    raw = subprocess.run([exe, "--start", "13", "--end", "15", str(script), "-"], capture_output=True, check=True).stdout
    api = vsvitm.ITM(clip_from_array(frames), models=tiny_models)
    h, w = frames.shape[1:3]
    got = np.frombuffer(raw, np.float32).reshape(3, 3, h, w)            # 3 frames, planar RGB
    for i, n in enumerate(range(13, 16)):
        # vspipe writes planar RGB in G, B, R order (FFmpeg's gbrp)
        np.testing.assert_array_equal(got[i][[2, 0, 1]].transpose(1, 2, 0), frame_to_array(api.get_frame(n)))


def test_errors_are_clear(src, tiny_models, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        vsvitm.ITM(src, mode="fast", models=tiny_models)
    with pytest.raises(ValueError, match="transfer"):
        vsvitm.ITM(src, transfer="pq", models=tiny_models)
    with pytest.raises(FileNotFoundError, match="no trained ICAM model"):
        vsvitm.ITM(src, models=tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_models.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "icam_ref.onnx").write_bytes((tiny_models / "icam_ref.onnx").read_bytes()[:1000])
    with pytest.raises(RuntimeError, match="could not load"):
        vsvitm.ITM(src, models=bad)
    with pytest.raises(ValueError, match="backend"):
        vsvitm.ITM(src, backend="cuda", models=tiny_models)
    for k in (0, 6, 2.5):
        with pytest.raises(ValueError, match="fcpm_keys"):
            vsvitm.ITM(src, mode="full", tuning={"fcpm_keys": k}, models=tiny_models)
    assert vsvitm.ITM(src, mode="full", tuning=vsvitm.Tuning(fcpm_keys=2), models=tiny_models).num_frames == src.num_frames


def test_exception_in_callback_surfaces_as_frame_error(src, tiny_models, monkeypatch):
    from vsvitm import engine
    out = vsvitm.ITM(src, mode="icam", models=tiny_models)

    def boom(*a, **k):
        raise RuntimeError("simulated failure inside ICAM")
    monkeypatch.setattr(engine.Engine, "icam", boom)
    with pytest.raises(vs.Error, match="simulated failure"):
        out.get_frame(5)


def test_temporal_runs_each_network_once(tiny_models, monkeypatch):
    """The default mode: single-frame ICAM once per frame and ICAM with references once per key frame,
    however many frames ask for a key frame's map, with frames requested in parallel."""
    from vsvitm import engine
    calls = []
    icam = engine.Engine.icam
    monkeypatch.setattr(engine.Engine, "icam", lambda self, k, c, refs: calls.append((k, bool(refs))) or icam(self, k, c, refs))
    old = core.num_threads
    core.num_threads = 4
    try:
        clip = vsvitm.ITM(clip_from_array(moving_clip(40)), key_stride=6, models=tiny_models)
        futs = [clip.get_frame_async(n) for n in range(40)]
        assert all(np.isfinite(frame_to_array(f.result())).all() for f in futs)
    finally:
        core.num_threads = old
    assert sorted(calls) == sorted(set(calls))
    assert {k for k, r in calls if not r} == set(range(40))
    assert {k for k, r in calls if r} == {3, 9, 15, 21, 27, 33, 39}


def test_ref_gate(tiny_models):
    """ITM(tuning=Tuning(ref_gate=...)): a reference step runs only for references that show what the key clipped.
    With every frame at one exposure no reference passes, and the result is the single-frame one;
    with the exposure swinging the darker references pass (VSVITM_ReferencesUsed lists them)."""
    flat = moving_clip(40)
    flat[:] = flat[17]                           # one frame held (9 % clipped): same exposure everywhere
    gated = vsvitm.ITM(clip_from_array(flat), mode="icam", tuning={"ref_gate": 0.001}, models=tiny_models)
    single = vsvitm.ITM(clip_from_array(flat), mode="icam", num_refs=0, models=tiny_models)
    f = gated.get_frame(20)
    assert as_list(f.props["VSVITM_References"]) == [5, 35] and as_list(f.props["VSVITM_ReferencesUsed"]) == [-1]
    np.testing.assert_array_equal(frame_to_array(f), frame_to_array(single.get_frame(20)))

    swing = clip_from_array(moving_clip(40))     # exposure 0.6 + 0.5 sin(t / 5)
    gated = vsvitm.ITM(swing, mode="icam", tuning={"ref_gate": 0.001}, models=tiny_models)
    every = vsvitm.ITM(swing, mode="icam", models=tiny_models)         # ref_gate=0 (the default)
    used = {n: as_list(gated.get_frame(n).props["VSVITM_ReferencesUsed"]) for n in (14, 24)}
    assert {n: as_list(every.get_frame(n).props["VSVITM_ReferencesUsed"]) for n in (14, 24)} == {14: [29], 24: [9, 39]}
    # key 14 (84 % clipped at exposure 0.77) and reference 29 (0.37): the reference shows it;
    # key 24 (exposure 0.10) clips nowhere: nothing to show
    assert used == {14: [29], 24: [-1]}
    # without exposure normalisation the networks get ratio 1, but the gate still judges by exposure
    no_norm = vsvitm.ITM(swing, mode="icam", tuning={"ref_gate": 0.001, "exposure_norm": False}, models=tiny_models)
    assert {n: as_list(no_norm.get_frame(n).props["VSVITM_ReferencesUsed"]) for n in (14, 24)} == used
    with pytest.raises(ValueError, match="ref_gate"):
        vsvitm.ITM(swing, tuning={"ref_gate": 1.5}, models=tiny_models)
    with pytest.raises(ValueError, match="ref_gate"):
        vsvitm.ITM(swing, tuning={"ref_gate": -0.1}, models=tiny_models)


def test_ref_keep(tiny_models):
    """ITM(tuning=Tuning(ref_gate=g, ref_keep=m)): the m nearest references each way always run, in the plugin's order,
    and the gate decides only the farther ones."""
    flat = moving_clip(40)
    flat[:] = flat[17]                           # same exposure everywhere: the gate passes nothing
    kw = dict(mode="icam", ref_stride=5, num_refs=3, models=tiny_models)
    for keep, near in ((1, [15, 25]), (2, [15, 25, 10, 30]), (3, [15, 25, 10, 30, 5, 35])):
        gated = vsvitm.ITM(clip_from_array(flat), tuning={"ref_gate": 0.001, "ref_keep": keep}, **kw).get_frame(20)
        assert as_list(gated.props["VSVITM_References"]) == [15, 25, 10, 30, 5, 35]
        assert as_list(gated.props["VSVITM_ReferencesUsed"]) == near
        # the same reference steps as asking for only the nearest `keep` each way
        plain = vsvitm.ITM(clip_from_array(flat), **dict(kw, num_refs=keep)).get_frame(20)
        np.testing.assert_array_equal(frame_to_array(gated), frame_to_array(plain))
    swing = clip_from_array(moving_clip(40))     # exposure 0.6 + 0.5 sin(t / 5)
    gate_only = vsvitm.ITM(swing, tuning={"ref_gate": 0.001}, **kw).get_frame(14)
    kept = vsvitm.ITM(swing, tuning={"ref_gate": 0.001, "ref_keep": 1}, **kw).get_frame(14)
    far_passed = [r for r in as_list(gate_only.props["VSVITM_ReferencesUsed"]) if abs(r - 14) > 5]
    assert far_passed  # the swing makes some far reference useful
    assert as_list(kept.props["VSVITM_ReferencesUsed"]) == [9, 19] + far_passed
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="ref_keep"):
            vsvitm.ITM(swing, tuning={"ref_gate": 0.001, "ref_keep": bad}, models=tiny_models)


