"""vsvitm.flow: DIS pre-flows and exposure ratios, the reference clue, the feature homography that starts DIS
where the camera moves far, and its field."""
import numpy as np
import pytest


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


@pytest.mark.parametrize("preset", ["fast", "medium"])
@pytest.mark.parametrize("h,w", [(120, 160), (540, 960)])
def test_preflow_finds_shift_and_exposure(h, w, preset):
    """flow.align_pair on a textured frame shifted by (-6, +4) px and darkened 2x: the ratio and
    the flow come out right, at the frame's own size (<= 320 px) and at DIS's reduced working size."""
    import cv2
    from vsvitm.curves import to_linear
    from vsvitm.flow import DISFlow, align_pair
    rng = np.random.default_rng(5)
    tex = cv2.resize(rng.random((h // 8 + 4, w // 8 + 4)).astype(np.float32), (w + 64, h + 64), interpolation=cv2.INTER_CUBIC)
    lin = np.clip(to_linear(np.clip(tex, 0, 1)) * 0.7 + 0.05, 0, 1)
    key = np.repeat(lin[32:32 + h, 32:32 + w, None], 3, 2)
    ref = np.repeat(lin[32 - 4:32 - 4 + h, 32 + 6:32 + 6 + w, None], 3, 2) * 0.5  # key(p) = 2 ref(p + (-6, +4))
    flow, e = align_pair(key, ref, DISFlow(preset))
    assert flow.shape == (h, w, 2) and flow.dtype == np.float32
    assert abs(e - 2.0) < 0.05
    inner = flow[h // 8: -h // 8, w // 8: -w // 8]
    assert abs(np.median(inner[..., 0]) + 6) < 0.5 and abs(np.median(inner[..., 1]) - 4) < 0.5


def test_reference_clue_counts_what_only_the_reference_saw():
    """flow.reference_clue: the fraction of the frame the key clipped and the reference, brought to
    the key's exposure, shows above the clip level; 0 for a reference as bright as the key or
    brighter, and for one clipped there too."""
    from vsvitm.flow import reference_clue
    level = 0.95 ** 2.2
    scene = np.full((64, 64), 0.5, np.float32)
    scene[:16, :16] = 1.6                       # a highlight beyond the key's clip level
    key = np.minimum(scene, 1.0)
    darker = np.minimum(scene / 2, 1.0)          # 2x less exposed: the highlight at 0.8, unclipped
    assert reference_clue(key, darker, 2.0, level) == pytest.approx(256 / 4096)
    assert reference_clue(key, key, 1.0, level) == 0.0                  # same exposure
    assert reference_clue(key, np.minimum(scene * 2, 1.0), 0.5, level) == 0.0   # brighter
    assert reference_clue(key, np.minimum(scene / 1.2, 1.0), 1.2, level) == 0.0  # 1.6/1.2 still clips
    assert reference_clue(key, darker, 1.01, level) == 0.0               # ratio noise around 1
    assert reference_clue(key, darker, None, level) == 1.0               # ratio unknown: keep it
    assert reference_clue(np.minimum(key, 0.8), darker, None, level) == 0.0   # nothing clipped in the key
