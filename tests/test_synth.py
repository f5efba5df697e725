"""Training-data synthesis (vsvitm.training.synth, sources, camera, saved): tiny synthetic HDR sources, fast."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vsvitm.curves import from_linear, max_channel
from vsvitm.training import camera, saved, sources
from vsvitm.training.sources import Source
from vsvitm.training.saved import clue_share
from vsvitm.training.synth import synth_from_ldr_video, synth_sequence

SHARED = Path("/work/shared/data")


def hdr_image(h=160, w=200, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((h // 8, w // 8, 3)).astype(np.float32)
    tex = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    img = 0.18 * np.exp2(0.8 * tex)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - h * 0.4) ** 2 + (xx - w * 0.6) ** 2) < (min(h, w) * 0.2) ** 2
    img[disc] *= 12.0  # a bright region, ~3.5 stops over the rest
    return cv2.GaussianBlur(img, (0, 0), 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def still():
    return Source("test-still", [hdr_image()])


@pytest.fixture(scope="module")
def video():
    img = hdr_image(seed=1)
    frames = [np.ascontiguousarray(np.roll(img, 2 * i, axis=1)) for i in range(6)]
    return Source("test-video", frames)


def test_deterministic(still, video):
    for src in (still, video):
        a = synth_sequence(src, 40, (32, 48), seed=5)
        b = synth_sequence(src, 40, (32, 48), seed=5)
        ra, rb = a.render([0, 7, 39]), b.render([39, 7, 0])
        assert np.array_equal(a.exposure, b.exposure) and a.transfer == b.transfer
        assert np.array_equal(ra["ldr"], rb["ldr"][::-1]) and np.array_equal(ra["hdr"], rb["hdr"][::-1])
        # a frame does not depend on which other frames are rendered with it
        assert np.array_equal(a.render([7])["ldr"][0], ra["ldr"][1])
        c = synth_sequence(src, 40, (32, 48), seed=6)
        assert not np.array_equal(c.render([7])["hdr"], ra["hdr"][1:2])


def test_shapes_and_exposure_varies(still):
    seq = synth_sequence(still, 120, (24, 40), seed=1)
    fr = seq.render([0, 60])
    assert fr["ldr"].dtype == np.uint8 and fr["ldr"].shape == (2, 24, 40, 3)
    assert fr["hdr"].dtype == np.float32 and fr["hdr"].shape == (2, 24, 40, 3)
    assert seq.exposure.dtype == np.float32 and seq.exposure.shape == (120,)
    assert seq.exposure.max() / seq.exposure.min() > 1.2
    assert np.isfinite(fr["hdr"]).all() and fr["hdr"].min() >= 0


def test_clipping_and_quantisation(still):
    seq = synth_sequence(still, 30, (40, 48), seed=2, transfer="gamma2.2", noise=False, jpeg=False)
    fr = seq.render(range(0, 30, 5))
    ldr, hdr = fr["ldr"], fr["hdr"]
    assert (hdr > 1.0).any() and (hdr < 0.9).any()
    assert (ldr[hdr >= 1.0] == 255).all()
    assert (ldr[hdr < 0.98] < 255).all()
    expect = np.rint(from_linear(np.minimum(hdr, 1.0)) * 255)
    assert np.abs(ldr.astype(np.float32) - expect).max() <= 1


def test_flow_reproduces_hdr(still):
    h, w = 48, 64
    # zoomed in (no pyramid level changes between frames): only bilinear resampling error remains
    seq = synth_sequence(still, 90, (h, w), seed=3, motion=1.0, static_prob=0.0, zoom=(0.2, 0.3))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    checked = 0
    for t, r in [(10, 40), (50, 20), (0, 89)]:
        fr = seq.render([t, r])
        flow, valid = seq.flow(t, r)
        assert flow.dtype == np.float32 and flow.shape == (h, w, 2) and valid.dtype == bool
        assert np.abs(flow).max() > 0.5  # the camera moved
        warped = cv2.remap(fr["hdr"][1], xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
        warped *= seq.exposure[t] / seq.exposure[r]
        m = valid & (fr["hdr"][0].max(-1) < 1) & (warped.max(-1) < 1)
        # stay away from the frame border (bilinear support)
        m[:1], m[-1:], m[:, :1], m[:, -1:] = False, False, False, False
        if m.sum() < 50:
            continue
        rel = np.abs(warped[m] - fr["hdr"][0][m]) / (fr["hdr"][0][m] + 1e-3)
        assert np.median(rel) < 0.02
        checked += 1
    assert checked >= 2
    f0, v0 = seq.flow(5, 5)
    assert np.abs(f0).max() < 1e-3 and v0.all()


def test_parallax_layer_flow(still):
    """A moving foreground layer: the GT flow follows each layer, and background pixels the layer covers in
    the other frame are not valid; sequences without the option are unchanged."""
    h, w = 48, 64
    kw = dict(motion=1.0, static_prob=0.0, zoom=(0.2, 0.3), noise=False, jpeg=False)
    plain = synth_sequence(still, 90, (h, w), seed=3, **kw)
    seq = synth_sequence(still, 90, (h, w), seed=3, parallax=True, **kw)
    np.testing.assert_array_equal(plain.exposure, seq.exposure)
    assert plain.layer is None and seq.layer is not None
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    checked = 0
    for t, r in [(10, 40), (50, 20), (30, 45), (60, 75)]:
        a_t = seq._layer(t)[..., 3]
        if not 0.05 < (a_t > 0.5).mean() < 0.95:
            continue
        fr = seq.render([t, r])
        flow, valid = seq.flow(t, r)
        f_bg, _ = camera.camera_flow(seq.homographies[t], seq.homographies[r], (h, w))
        front = a_t > 0.95
        assert np.abs(flow[front] - f_bg[front]).max() > 0.5  # the layer moves against the background
        warped = cv2.remap(fr["hdr"][1], xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
        warped *= seq.exposure[t] / seq.exposure[r]
        m = valid & (fr["hdr"][0].max(-1) < 1) & (warped.max(-1) < 1)
        m[:1], m[-1:], m[:, :1], m[:, -1:] = False, False, False, False
        rel = np.abs(warped[m] - fr["hdr"][0][m]) / (fr["hdr"][0][m] + 1e-3)
        assert m.sum() > 50 and np.median(rel) < 0.02
        # the camera flow alone (what a global alignment gives) misses on the layer
        wrong = cv2.remap(fr["hdr"][1], xs + f_bg[..., 0], ys + f_bg[..., 1], cv2.INTER_LINEAR)
        wrong *= seq.exposure[t] / seq.exposure[r]
        mf = m & front
        if mf.sum() > 50:
            assert np.median(np.abs(wrong[mf] - fr["hdr"][0][mf]) / (fr["hdr"][0][mf] + 1e-3)) > 0.02
        checked += 1
    assert checked >= 2


def test_view_stays_inside_source(still):
    seq = synth_sequence(still, 60, (64, 64), seed=4, motion=1.0, zoom=(0.5, 0.95), max_rotation=8.0)
    sh, sw = still.shape
    for H in seq.homographies:
        q = H @ np.array([[0, 63, 0, 63], [0, 0, 63, 63], [1, 1, 1, 1]], np.float64)
        q = q[:2] / q[2]
        assert q.min() >= -1e-3 and q[0].max() <= sw - 1 + 1e-3 and q[1].max() <= sh - 1 + 1e-3


def test_video_source_pingpong_and_flow(video):
    seq = synth_sequence(video, 20, (32, 48), seed=7, noise=False, jpeg=False)
    idx = seq.src_index
    assert idx.min() >= 0 and idx.max() <= 5 and (np.abs(np.diff(idx)) == 1).all()
    flow, valid = seq.flow(0, 3)
    assert flow.shape == (32, 48, 2) and valid.any()


def test_clue_share(still):
    seq = synth_sequence(still, 120, (40, 48), seed=8, transfer="gamma2.2", noise=False, jpeg=False,
                         events_per_100=4.0, event_stops=(1.0, 1.5), clip_percentile=(90.0, 95.0))
    shares = [clue_share(seq, t) for t in range(0, 120, 20)]
    shares = [s for s in shares if np.isfinite(s)]
    assert shares and all(0.0 <= s <= 1.0 for s in shares)
    assert max(shares) > 0.0


def test_ldr_video_route():
    rng = np.random.default_rng(0)
    img = np.clip(hdr_image(48, 64) * 0.3, 0, 1)  # an LDR video without much clipping
    frames = np.stack([np.rint(from_linear(np.roll(img, i, axis=1)) * 255).astype(np.uint8) for i in range(8)])
    seq = synth_from_ldr_video(frames, seed=1)
    assert seq.n_frames == 8 and seq.size == (48, 64) and seq.transfer == "gamma2.2"
    fr = seq.render(range(8))
    lin = (frames.astype(np.float32) / 255) ** 2.2
    np.testing.assert_allclose(fr["hdr"], lin * seq.exposure[:, None, None, None], rtol=1e-4, atol=1e-5)
    expect = np.rint(from_linear(np.minimum(fr["hdr"], 1)) * 255)
    assert np.abs(fr["ldr"].astype(np.float32) - expect).max() <= 1
    assert (fr["hdr"] > 1).any()  # some clipping happens
    del rng


def test_npz_roundtrip(still, tmp_path):
    seq = synth_sequence(still, 12, (24, 32), seed=9)
    np.savez(tmp_path / "s.npz", **seq.to_npz_dict())
    s2 = saved.load_npz_sequence(tmp_path / "s.npz")
    assert s2.n_frames == 12 and s2.size == (24, 32) and s2.transfer == seq.transfer
    a, b = seq.render([3, 8]), s2.render([3, 8])
    assert np.array_equal(a["ldr"], b["ldr"])
    np.testing.assert_allclose(a["hdr"], b["hdr"], rtol=2e-3, atol=1e-4)
    f1, v1 = seq.flow(2, 9)
    f2, v2 = s2.flow(2, 9)
    np.testing.assert_allclose(f1, f2, atol=1e-4)
    assert np.array_equal(v1, v2)


def test_exr_roundtrip(tmp_path):
    from vsvitm.training.exr import read_exr, write_exr
    a = hdr_image(8, 16)
    a[0, 0, 0] = np.nan
    write_exr(tmp_path / "a.exr", a)
    b = read_exr(tmp_path / "a.exr")
    assert b.shape == (8, 16, 3) and b.dtype == np.float32 and b[0, 0, 0] == 0
    np.testing.assert_allclose(b[1:], a[1:], rtol=2e-3)


def test_user_folder(tmp_path):
    from vsvitm.training.exr import write_exr
    write_exr(tmp_path / "a.exr", hdr_image(16, 24))
    (tmp_path / "clip").mkdir()
    for i in range(3):
        write_exr(tmp_path / "clip" / f"{i:04d}.exr", hdr_image(16, 24, seed=i))
    srcs = sources.load_sources(tmp_path)
    kinds = sorted((s.name, len(s.frames)) for s in srcs)
    assert kinds == [("a", 1), ("clip", 3)]
    for s in srcs:
        med = np.median(np.concatenate([sources.luminance(f).ravel() for f in s.frames]))
        assert 0.1 < med < 0.3


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not present")
def test_shared_splits_disjoint():
    train = sources.source_paths(SHARED, "train")
    test = sources.source_paths(SHARED, "test")
    assert train and len(test) == 5
    tr = {str(p) for _, ps in train for p in ps}
    te = {str(p) for _, ps in test for p in ps}
    assert not tr & te
    tr_dirs = {str(Path(p).parent) for _, ps in train for p in ps if len(ps) > 1}
    assert not tr_dirs & {str(Path(p).parent) for _, ps in test for p in ps if len(ps) > 1}
    assert not any("seine" in p or "ultraHDR" in p for p in tr)


def test_max_channel_and_lazy_knee_frames(video):
    """The fast max over 3 channels is exact, and a graded video computes a frame only when asked,
    the same values each time."""
    a = np.random.default_rng(1).standard_normal((5, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(max_channel(a), a.max(axis=-1))
    graded = sources.highlight_knee(video, np.random.default_rng(3))
    assert len(graded.frames) == len(video.frames) and graded.is_video
    assert not graded.frames._done  # nothing graded yet
    f2 = graded.frames[2]
    assert list(graded.frames._done) == [2] and graded.frames[-4] is f2
    assert graded.shape == video.shape
    assert f2.dtype == np.float32 and (f2 <= video.frames[2] + 1e-6).all()
    assert len(graded.frames[1:3]) == 2
