"""The camera-pan benchmark's geometry, exposure and clue mask on tiny pans with known answers."""
import numpy as np
import pytest

from vsvitm.training.pans import CLIPPED_CODE, PanSequence, flow_from_npz, rotation


def flat_panorama(value=0.2, patch=None, h=32):
    pano = np.full((h, 2 * h, 3), value, np.float32)
    if patch is not None:
        (y0, y1, x0, x1), v = patch
        pano[y0:y1, x0:x1] = v
    return pano


def yaw_pan(pano, yaws, size=(16, 24), fov=60.0):
    seq = PanSequence(pano, len(yaws), size, seed=0, fov=fov)
    seq.rotations = np.stack([rotation(np.radians(y), 0.0) for y in yaws])
    return seq


def test_flow_of_a_yaw_is_the_tangent():
    seq = yaw_pan(flat_panorama(), [0.0, 5.0])
    flow, valid = seq.flow(0, 1)
    h, w = seq.size
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # the point straight ahead in frame 0 lies 5 degrees to the left once the camera has turned right
    expect = -seq.focal * np.tan(np.radians(5.0))
    ys, xs = np.mgrid[0:h, 0:w]
    centre = np.abs(ys - cy) + np.abs(xs - cx) < 1.01
    assert np.allclose(flow[centre][:, 0], expect, atol=0.05 * abs(expect) + 0.02)
    assert np.abs(flow[..., 1][h // 2 - 1: h // 2 + 1]).max() < 0.05
    # the right edge of frame 0 is still in view, the left edge has left it
    assert valid[:, -1].all() and not valid[:, 0].any()


def test_flow_round_trip_and_identity():
    seq = PanSequence(flat_panorama(), 60, (16, 24), seed=3)
    f0, v0 = seq.flow(2, 2)
    assert np.abs(f0).max() < 1e-4 and v0.all()
    fab, vab = seq.flow(10, 12)
    fba, _ = seq.flow(12, 10)
    assert np.abs(fab).max() > 1.0  # the camera moved
    h, w = seq.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    back_x = xs + fab[..., 0]
    back_y = ys + fab[..., 1]
    import cv2
    rx = cv2.remap(fba[..., 0], back_x, back_y, cv2.INTER_LINEAR)
    ry = cv2.remap(fba[..., 1], back_x, back_y, cv2.INTER_LINEAR)
    inner = vab & (back_x > 1) & (back_x < w - 2) & (back_y > 1) & (back_y < h - 2)
    assert inner.sum() > 20
    assert np.abs(fab[..., 0] + rx)[inner].max() < 0.05 and np.abs(fab[..., 1] + ry)[inner].max() < 0.05


def test_saved_flow_equals_live_flow():
    seq = PanSequence(flat_panorama(), 4, (12, 16), seed=1)
    d = seq.to_npz_dict()
    f, v = flow_from_npz(d, 0, 3)
    g, u = seq.flow(0, 3)
    assert np.array_equal(f, g) and np.array_equal(v, u)


def test_clue_mask_is_the_patch_a_darker_frame_sees():
    # a bright patch straight ahead; frame 0 exposed so that it clips, frame 1 three stops darker
    pano = flat_panorama(0.05, ((12, 20, 28, 36), 4.0))
    seq = yaw_pan(pano, [0.0, 0.0, 0.0])
    seq.exposure = np.float32([1.0, 0.125, 1.0])
    seq.noise = (0.0, 0.0)
    d = seq.to_npz_dict()
    ldr, clue = d["ldr"], d["clue"]
    clipped0 = ldr[0].max(-1) >= CLIPPED_CODE
    assert clipped0.any() and not (ldr[1].max(-1) >= CLIPPED_CODE).any()
    assert np.array_equal(clue[0], clipped0)       # frame 1 sees all of it unclipped
    assert np.array_equal(clue[2], clipped0)
    assert not clue[1].any()                       # nothing clipped in frame 1
    # the truth is the radiance times each frame's exposure
    assert np.allclose(d["hdr"][1].astype(np.float32), d["hdr"][0].astype(np.float32) * 0.125, rtol=2e-3)


def test_clue_mask_needs_the_point_in_view():
    pano = flat_panorama(0.05, ((12, 20, 28, 36), 4.0))
    seq = yaw_pan(pano, [0.0, 120.0])              # the patch has left the view in frame 1
    seq.exposure = np.float32([1.0, 0.125])
    seq.noise = (0.0, 0.0)
    d = seq.to_npz_dict()
    assert (d["ldr"][0].max(-1) >= CLIPPED_CODE).any() and not d["clue"][0].any()


def test_auto_exposure_lags_and_errors():
    seq = PanSequence(flat_panorama(0.3, ((0, 16, 0, 32), 3.0)), 40, (16, 24), seed=5)
    ev = np.log2(seq.exposure)
    assert np.all(np.isfinite(ev)) and np.abs(np.diff(ev)).max() < 0.5   # a lagging controller, no jumps
    with pytest.raises(ValueError, match="lat-long"):
        PanSequence(np.zeros((8, 8, 3), np.float32), 4, (8, 8), seed=0)
    with pytest.raises(ValueError, match="n_frames"):
        PanSequence(flat_panorama(), 1, (8, 8), seed=0)
