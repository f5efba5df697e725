"""vsvitm.temporal: measurements from other frames, their weights, and the fallback to the single-frame result."""
import numpy as np

from vsvitm import temporal as T
from vsvitm.curves import to_linear

THR = 0.95
CLIP = float(to_linear(np.float32(THR), "gamma2.2"))


def code_of(lin):
    return np.clip(lin, 0.0, 1.0) ** (1 / 2.2)


def scene(h=32, w=48, seed=0):
    """Textured radiance with a bright disc (2.5x the clip level) in the middle."""
    rng = np.random.default_rng(seed)
    base = 0.15 + 0.25 * rng.random((h // 4, w // 4, 3)).astype(np.float32)
    import cv2
    rad = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 4) ** 2
    rad[disc] = np.float32([2.5, 2.2, 1.8])
    return rad, disc


def test_fuse_without_evidence_is_the_single_frame_result():
    rad, _ = scene()
    code = code_of(rad)
    lin = to_linear(code, "gamma2.2")
    base = np.maximum(lin * 1.7, lin)
    y, conf = T.fuse(base, lin, code, CLIP, THR, [])
    assert np.array_equal(y, base) and not conf.any()
    m = rad * 0.5
    y, conf = T.fuse(base, lin, code, CLIP, THR, [(m, np.zeros_like(m))])
    assert np.array_equal(y, base) and not conf.any()


def test_a_darker_aligned_frame_measures_the_clipped_disc():
    rad, disc = scene()
    code_k = code_of(rad)            # the key clips the disc
    code_r = code_of(rad * 0.25)     # two stops darker: nothing clips
    lin_k, lin_r = to_linear(code_k, "gamma2.2"), to_linear(code_r, "gamma2.2")
    flow = np.zeros(rad.shape[:2] + (2,), np.float32)
    m, w = T.measure(code_k, lin_k, code_r, lin_r, flow, 4.0, THR)
    inner = disc.copy()
    inner[[0, -1]] = False
    assert np.allclose(m[inner], rad[inner], rtol=0.02)
    assert w[inner].min() > 0.7
    base = np.maximum(lin_k * 1.2, lin_k)  # a single-frame guess far below the truth
    y, conf = T.fuse(base, lin_k, code_k, CLIP, THR, [(m, w)])
    err_before = np.abs(np.log(base[inner]) - np.log(rad[inner])).mean()
    err_after = np.abs(np.log(y[inner]) - np.log(rad[inner])).mean()
    assert err_after < 0.4 * err_before  # one measurement: confidence 0.8, less at the disc's edge
    # outside the clipped disc nothing changes
    assert np.array_equal(y[~disc & (code_k.max(-1) < THR - T.CLIP_SOFT)], base[~disc & (code_k.max(-1) < THR - T.CLIP_SOFT)])


def test_a_channel_without_measurement_follows_the_measured_ones():
    """A clipped pixel whose reference measured red and green but clipped blue: blue moves by the same
    log change (upwards), so the pixel keeps the single-frame guess's hue instead of taking a tint."""
    code = np.ones((8, 8, 3), np.float32)
    lin = to_linear(code, "gamma2.2")
    base = np.full((8, 8, 3), 1.2, np.float32)
    m = np.full((8, 8, 3), 4.8, np.float32)      # 4x the guess in every channel ...
    w = np.ones((8, 8, 3), np.float32)
    w[..., 2] = 0.0                               # ... but blue was clipped in the reference
    y, conf = T.fuse(base, lin, code, CLIP, THR, [(m, w)], w0=None)
    assert np.allclose(y[..., 0], 4.8, rtol=1e-3) and np.allclose(y[..., 2], y[..., 0], rtol=1e-3)
    assert conf[..., 2].max() == 0.0


def test_a_frame_clipped_there_measures_nothing():
    rad, disc = scene()
    code = code_of(rad)
    lin = to_linear(code, "gamma2.2")
    flow = np.zeros(rad.shape[:2] + (2,), np.float32)
    _, w = T.measure(code, lin, code, lin, flow, 1.0, THR)
    assert w[disc].max() == 0.0


def test_a_misaligned_frame_is_not_trusted():
    rad, disc = scene()
    code_k, code_r = code_of(rad), code_of(rad * 0.25)
    lin_k, lin_r = to_linear(code_k, "gamma2.2"), to_linear(code_r, "gamma2.2")
    good = np.zeros(rad.shape[:2] + (2,), np.float32)
    bad = good.copy()
    bad[..., 0] = 9.0   # nine pixels off
    _, w_good = T.measure(code_k, lin_k, code_r, lin_r, good, 4.0, THR)
    _, w_bad = T.measure(code_k, lin_k, code_r, lin_r, bad, 4.0, THR)
    assert w_bad[disc].mean() < 0.5 * w_good[disc].mean()


def test_a_sample_with_a_clipped_tap_is_clipped():
    code = np.zeros((4, 4, 3), np.float32)
    code[:, 2:] = 1.0
    flow = np.zeros((4, 4, 2), np.float32)
    flow[..., 0] = 0.5  # halfway between columns
    c = T.tap_clipping(code, flow, THR)
    assert np.all(c[:, 0] == 0.0)   # taps 0 and 1: unclipped
    assert np.all(c[:, 1] == 1.0)   # taps 1 and 2: one clipped


def test_carried_key_map_lands_where_the_flow_says():
    rad, disc = scene()
    code_k = code_of(rad)
    lin_k = to_linear(code_k, "gamma2.2")
    y_k = rad.copy()                          # a key frame that knows the disc's radiance
    conf = np.ones_like(rad)
    rmap, trust = T.radiance_map(y_k, lin_k, code_k, conf, THR)
    assert np.allclose(rmap[disc], rad[disc], rtol=1e-3)
    # frame t is the key shifted 3 px to the right and 1.5x brighter: flow t -> k is -3 px
    shift = 3
    rad_t = np.roll(rad, shift, axis=1) * 1.5
    code_t = code_of(rad_t)
    lin_t = to_linear(code_t, "gamma2.2")
    flow = np.zeros(rad.shape[:2] + (2,), np.float32)
    flow[..., 0] = -shift
    ms = T.carried(code_t, lin_t, THR, [(1.0, flow, 1.5, code_k, rmap, trust)])
    base = lin_t.copy()
    y, c = T.fuse(base, lin_t, code_t, CLIP, THR, ms, w0=None)
    disc_t = np.roll(disc, shift, axis=1)
    inner = disc_t & (np.roll(disc_t, 1, 1) & np.roll(disc_t, -1, 1))
    assert np.allclose(y[inner], rad_t[inner], rtol=0.1)
    assert np.isfinite(y).all() and (y >= lin_t).all()


def test_key_weights_follow_time():
    from vsvitm.itm import key_weights
    assert key_weights(9, [3, 9, 15]) == [(9, 1.0)]
    assert key_weights(11, [3, 9, 15]) == [(9, 4 / 6), (15, 2 / 6)]
    assert key_weights(1, [3, 9, 15]) == [(3, 1.0)]
    assert key_weights(17, [3, 9, 15]) == [(15, 1.0)]
