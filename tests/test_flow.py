"""vsvitm.flow: the feature homography that starts DIS where the camera moves far, and its field."""
import numpy as np


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
