"""Whatever a user feeds ITM: finite HDR frames, or a clear error at ITM() time (tiny graphs, CPU).

Inputs (lengths, sizes, formats, colour props, degenerate pixels, scene cuts), faults (models,
backends, exceptions inside frame callbacks, which must never hang) and the scheduling plan as ITM
really uses it (each frame sees only the cuts within `reach` of itself).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import vapoursynth as vs
from hypothesis import given, settings, strategies as st

import vsvitm
from vsvitm import backends
from vsvitm.itm import as_list
from vsvitm.schedule import Schedule
from vsvitm.vsnp import clip_from_array, frame_to_array

from conftest import ROOT, moving_clip

core = vs.core
TIMEOUT = 60  # seconds: a frame request that takes longer than this counts as a hang


def check(out, src, frames, fmt=vs.RGBS):
    """Render `frames` of ITM output `out` (of input `src`): right size and format, finite, >= 0."""
    assert out.format.id == fmt and (out.width, out.height) == (src.width, src.height)
    assert out.num_frames == src.num_frames
    res = {}
    for n in frames:
        a = frame_to_array(out.get_frame_async(n).result(timeout=TIMEOUT)).astype(np.float32)
        assert a.shape == (src.height, src.width, 3)
        assert np.isfinite(a).all() and a.min() >= 0, n
        res[n] = a
    return res


@pytest.fixture(scope="module")
def rgb8():
    return clip_from_array(moving_clip(8))


# --- clip length and size ---

@pytest.mark.parametrize("length", [1, 2, 10])
@pytest.mark.parametrize("mode", ["full", "icam"])
def test_clips_shorter_than_the_reference_span(tiny_models, length, mode):
    src = clip_from_array(moving_clip(length))
    out = vsvitm.ITM(src, mode=mode, models=tiny_models)
    check(out, src, range(length))
    for n in range(length):
        p = out.get_frame(n).props
        refs = [r for r in as_list(p["VSVITM_References"]) if r >= 0]
        assert all(0 <= r < length for r in refs)
        if mode == "full":
            assert all(0 <= k < length for k in as_list(p["VSVITM_Keys"]))


@pytest.mark.parametrize("w,h", [(1, 1), (2, 2), (16, 16), (17, 9), (200, 31), (9, 130)])
def test_odd_tiny_and_thin_sizes(tiny_models, w, h):
    # (200, 31) and (17, 9) crashed OpenCV's DIS flow (a segfault / an error) before flow.py upsampled them
    src = clip_from_array(moving_clip(8, h=h, w=w))
    check(vsvitm.ITM(src, models=tiny_models), src, (0, 3, 7))


def test_large_frame_memory_is_bounded(tiny_models):
    """One frame at 1280x720 (and 3840x2160 when that is predicted to take < 15 s) in mode icam with
    num_refs=0, each in a fresh process: peak RSS growth stays within a per-pixel bound."""
    script = textwrap.dedent("""
        import resource, sys, time
        import numpy as np, vapoursynth as vs, vsvitm
        from vsvitm.vsnp import frame_to_array
        w, h = int(sys.argv[1]), int(sys.argv[2])
        clip = vs.core.std.BlankClip(width=w, height=h, format=vs.YUV420P8, length=2, color=[200, 140, 110])
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        a = frame_to_array(vsvitm.ITM(clip, mode="icam", num_refs=0, models=sys.argv[3]).get_frame(0))
        assert a.shape == (h, w, 3) and np.isfinite(a).all() and a.min() >= 0
        print(time.perf_counter() - t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) * 1024)
        """)

    def run(w, h):
        r = subprocess.run([sys.executable, "-c", script, str(w), str(h), str(tiny_models)], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-2000:]
        secs, grow = map(float, r.stdout.split()[-2:])
        # tiny graphs need ~400 B/pixel at their peak (full-resolution activations); no frame is kept
        assert grow < 600 * w * h + (200 << 20), (w, h, grow / 2**20)
        return secs

    secs = run(1280, 720)
    avail = int(open("/proc/meminfo").read().split("MemAvailable:")[1].split()[0]) << 10
    if secs * 9 > 15 or avail < 8 << 30:
        pytest.skip(f"3840x2160 skipped: predicted {secs * 9:.0f} s, {avail >> 30} GiB available")
    run(3840, 2160)


# --- formats and colour props ---

FORMATS = ["YUV420P8", "YUV420P10", "YUV420P16", "YUV444P8", "YUV444P10", "YUV444P16", "RGB24", "RGB48",
           "GRAY8", "GRAY16", "RGBH", "RGBS"]


@pytest.fixture(scope="module")
def reference_out(rgb8, tiny_models):
    return check(vsvitm.ITM(rgb8, models=tiny_models), rgb8, (0, 5))


@pytest.mark.parametrize("fmt", FORMATS)
def test_input_formats(rgb8, tiny_models, reference_out, fmt):
    kw = {"matrix_s": "709", "range_s": "full"} if fmt.startswith(("YUV", "GRAY")) else {}
    src = core.resize.Bicubic(rgb8, format=getattr(vs, fmt), **kw)
    got = check(vsvitm.ITM(src, models=tiny_models), src, (0, 5))
    if not fmt.startswith("GRAY"):  # eq. 1 leaves most pixels at f^-1(L): close to the RGB24 result
        for n in got:
            assert np.median(np.abs(got[n] - reference_out[n])) < 0.01, fmt


@pytest.mark.parametrize("props", [dict(_Matrix=2), dict(_Matrix=100), dict(_Matrix=3), dict(_Matrix=14),
                                   dict(_Matrix=0), dict(_Range=5), dict(_Transfer=100, _Primaries=0),
                                   dict(_ChromaLocation=9), dict(_Matrix="709"), None])
def test_missing_or_wrong_colour_props_fall_back_to_defaults(rgb8, tiny_models, props):
    """Props zimg cannot convert used to fail every frame mid-encode; now BT.709 / unspecified."""
    yuv = core.resize.Bicubic(rgb8, format=vs.YUV420P8, matrix_s="709")
    src = core.std.RemoveFrameProps(yuv) if props is None else core.std.SetFrameProps(yuv, **props)
    got = check(vsvitm.ITM(src, mode="linear"), src, (0,))[0]
    ref = check(vsvitm.ITM(yuv, mode="linear"), yuv, (0,))[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)      # BT.709, limited range, ... as the defaults
    check(vsvitm.ITM(src, models=tiny_models), src, (0, 4))


def test_rgb_with_yuv_props(rgb8, tiny_models):
    src = core.std.SetFrameProps(rgb8, _Matrix=6, _Range=0, _Transfer=100)
    check(vsvitm.ITM(src, models=tiny_models), src, (0,))


# --- degenerate pixels ---

@pytest.mark.parametrize("mode", ["full", "icam"])
def test_all_black_and_fully_clipped(rgb8, tiny_models, mode):
    black = core.std.BlankClip(rgb8, color=[0, 0, 0])
    white = core.std.BlankClip(rgb8, color=[255, 255, 255])
    for n, a in check(vsvitm.ITM(black, mode=mode, models=tiny_models), black, (0, 4)).items():
        assert (a == 0).all()                      # nothing over-exposed: f^-1(0) everywhere
    for n, a in check(vsvitm.ITM(white, mode=mode, models=tiny_models), white, (0, 4)).items():
        assert (a >= 1 - 1e-6).all()               # never darker than f^-1(L) = 1


def test_nan_and_inf_in_float_input(tiny_models):
    arr = (moving_clip(6).astype(np.float32) / 255)
    bad = arr.copy()
    bad[:, ::3, ::5] = np.nan
    bad[:, 1::7, ::3, 1] = np.inf
    bad[:, 2::7, ::3, 2] = -np.inf
    bad[:, 3::9, ::4, 0] = 7.0
    clean = np.nan_to_num(bad, nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1)   # what the plugin sanitises to
    for mode in ("full", "icam"):
        a = check(vsvitm.ITM(clip_from_array(bad), mode=mode, models=tiny_models), clip_from_array(bad), (0, 3))
        b = check(vsvitm.ITM(clip_from_array(clean), mode=mode, models=tiny_models), clip_from_array(clean), (0, 3))
        for n in a:
            np.testing.assert_array_equal(a[n], b[n])


# --- scene cuts ---

def _cut_every(src, k):
    def mark(n, f):
        out = f.copy()
        out.props["_SceneChangePrev"] = int(n % k == 0)
        return out
    return core.std.ModifyFrame(src, src, mark)


@pytest.mark.parametrize("every", [1, 3])
def test_scene_cuts_every_few_frames(tiny_models, every):
    src = _cut_every(clip_from_array(moving_clip(12)), every)
    out = vsvitm.ITM(src, models=tiny_models)
    check(out, src, range(12))
    for n in range(12):
        shot = range(n // every * every, n // every * every + every)
        p = out.get_frame(n).props
        assert all(k in shot for k in as_list(p["VSVITM_Keys"])), (n, p["VSVITM_Keys"])
        assert all(r in shot for r in as_list(p["VSVITM_References"]) if r >= 0)
    check(vsvitm.ITM(src, mode="icam", models=tiny_models), src, range(0, 12, 5))


# --- faults: models and backends, at ITM() time ---


def test_fp16_graphs_run_through_the_plugin(rgb8):
    """Backend fp16=True runs the shipped *_fp16 graphs (on the CPU here; CUDA is where they pay
    off): finite, and within 1 % of the fp32 result. Regression: they once did not load."""
    from vsvitm.engine import MODEL_DIR
    if not (MODEL_DIR / "fcpm.json").exists():
        pytest.skip("no shipped models in this checkout")
    a = check(vsvitm.ITM(rgb8), rgb8, (0, 6))
    b = check(vsvitm.ITM(rgb8, backend=vsvitm.Backend.ORT_CPU(fp16=True)), rgb8, (0, 6))
    for n in a:
        assert np.isfinite(b[n]).all()
        np.testing.assert_allclose(np.log(b[n] + 1e-3), np.log(a[n] + 1e-3), atol=0.01)


# --- faults inside frame callbacks: a vs.Error naming the cause, never a hang ---

@pytest.mark.parametrize("mode,method", [("full", "merge"), ("full", "propagate"), ("full", "icam"), ("full", "preflow"),
                                         ("temporal", "icam"), ("temporal", "pair")])
def test_exception_in_callback_surfaces_and_does_not_hang(tiny_models, monkeypatch, mode, method):
    from vsvitm import engine
    src = clip_from_array(moving_clip(24))
    out = vsvitm.ITM(src, mode=mode, models=tiny_models)

    def boom(*a, **k):
        raise RuntimeError(f"simulated failure in Engine.{method}")
    monkeypatch.setattr(engine.Engine, method, boom)
    old = core.num_threads
    core.num_threads = 4
    try:
        futs = [out.get_frame_async(n) for n in (0, 7, 13, 23, 7)]    # several in flight, one twice
        for f in futs:
            with pytest.raises(vs.Error, match=f"simulated failure in Engine.{method}"):
                f.result(timeout=TIMEOUT)
        monkeypatch.undo()
        # the filter is still usable afterwards (nothing half-written was cached)
        check(out, src, (0, 7, 23))
    finally:
        core.num_threads = old


# --- the scheduling plan as ITM uses it ---

@st.composite
def clips(draw):
    n = draw(st.integers(1, 300))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=10)))) if n > 1 else []
    s = Schedule(n, key_stride=draw(st.integers(1, 12)), ref_stride=draw(st.integers(1, 30)),
                 num_refs=draw(st.integers(0, 6)), fcpm_keys=draw(st.integers(1, 5)),
                 chunk=draw(st.integers(1, 24)), margin=draw(st.integers(0, 8)))
    return s, cuts, draw(st.integers(0, n - 1))


def window(s, cuts, n):
    """The cuts frame n sees in ITM (`_VSVITM_Cuts`): those within n +- reach, inside the clip."""
    return [c for c in cuts if 0 < c < s.num_frames and abs(c - n) <= s.reach]


@settings(max_examples=300, deadline=None)
@given(clips())
def test_every_requested_frame_is_inside_the_clip_and_keys_agree(p):
    """What frame t's stages request (keys, their references, the chunk's run) lies inside the clip, and a
    key chosen by t is a key in its own view too (else key_node returns a blank Y and merge uses zeros)."""
    s, cuts, t = p
    n = s.num_frames
    wt = window(s, cuts, t)
    cs, ce, rs, re = s.chunk_of(t, wt)
    assert 0 <= rs <= cs <= t < ce <= re <= n
    for tt in range(rs, re):              # every frame of the run is merged from its own nearest keys
        for k in s.nearest_keys(tt, window(s, cuts, tt)):
            assert 0 <= k < n
            wk = window(s, cuts, k)
            assert s.is_key(k, wk), (tt, k)
            assert s.shot(k, cuts) == s.shot(tt, cuts)          # never across a cut
            for r in s.references(k, wk):
                assert 0 <= r < n and s.shot(r, cuts) == s.shot(k, cuts)
    # the same chunk seen from every frame of its core: one cached result serves them all
    for tt in range(cs, ce):
        assert s.chunk_of(tt, window(s, cuts, tt)) == (cs, ce, rs, re)


