"""Tests for vsvitm.training.metrics (numpy only, tiny arrays)."""
import math

import numpy as np
import pytest

from vsvitm.training import metrics as M

# PU21 'banding_glare' reference values.  Computed with 30-digit arithmetic (mpmath) from the published
# formula V = p7*(((p1 + p2*Y^p4)/(1 + p3*Y^p4))^p5 - p6) and parameters
# p = [0.353487901, 0.3734658629, 8.277049286e-05, 0.9062562627, 0.09150303166, 0.9099517204, 596.3148142]
# of Mantiuk & Azimi, PCS 2021, as in github.com/gfxdisp/pu21 matlab/pu21_encoder.m (type 'banding_glare').
PU21_REF = {
    0.1: 5.71707383966946,
    1.0: 36.5439111394192,
    10.0: 123.647483553847,
    100.0: 256.383897312704,
    1000.0: 420.096921349244,
    10000.0: 595.393920020095,
}


@pytest.mark.parametrize("Y,V", sorted(PU21_REF.items()))
def test_pu21_reference_values(Y, V):
    assert M.pu21_encode(Y) == pytest.approx(V, rel=1e-9)


def test_pu21_clamp_and_monotonic():
    # Luminance is clamped to [0.005, 10000] cd/m2 as in the reference encoder.
    assert M.pu21_encode(0.0) == pytest.approx(M.pu21_encode(0.005))
    assert M.pu21_encode(0.005) == pytest.approx(0.0, abs=1e-6)
    assert M.pu21_encode(1e6) == pytest.approx(PU21_REF[10000.0])
    y = np.logspace(np.log10(0.005), 4, 50)
    assert np.all(np.diff(M.pu21_encode(y)) > 0)
    np.testing.assert_allclose(M.pu21_decode(M.pu21_encode(y)), y, rtol=1e-6)


def test_luminance_weights():
    assert M.luminance(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert M.luminance(np.array([0.0, 1.0, 0.0])) == pytest.approx(0.7152)


def test_psnr_identical_is_inf():
    img = np.full((4, 5, 3), 0.5, np.float32)
    assert M.pu21_psnr(img, img) == math.inf


def test_psnr_constant_pu_offset():
    # gt at 1.0 (= 100 cd/m2) and pred at 10.0 (= 1000 cd/m2), uniform: every PU difference is
    # PU(1000) - PU(100) = 163.713024..., so PSNR = 20 log10(256 / 163.713024...) (peak 256, reference).
    gt = np.ones((3, 4, 3))
    pred = np.full((3, 4, 3), 10.0)
    d = PU21_REF[1000.0] - PU21_REF[100.0]
    assert d == pytest.approx(163.713024036540, rel=1e-12)
    assert M.pu21_psnr(pred, gt, scale=100.0) == pytest.approx(20 * math.log10(256.0 / d), rel=1e-9)
    # the scale argument: 1.0 = 10 cd/m2 makes it PU(100) - PU(10)
    d10 = PU21_REF[100.0] - PU21_REF[10.0]
    assert M.pu21_psnr(pred, gt, scale=10.0) == pytest.approx(20 * math.log10(256.0 / d10), rel=1e-9)


def test_psnr_half_pixels_wrong_and_mask():
    gt = np.ones((2, 4, 3))
    pred = gt.copy()
    pred[:, :2] = 10.0  # left half wrong
    d = PU21_REF[1000.0] - PU21_REF[100.0]
    full = M.pu21_psnr(pred, gt)
    assert full == pytest.approx(10 * math.log10(256.0**2 / (d * d / 2)), rel=1e-9)
    left = np.zeros((2, 4), bool)
    left[:, :2] = True
    assert M.pu21_psnr(pred, gt, mask=left) == pytest.approx(20 * math.log10(256.0 / d), rel=1e-9)
    assert M.pu21_psnr(pred, gt, mask=~left) == math.inf
    assert math.isnan(M.pu21_psnr(pred, gt, mask=np.zeros((2, 4), bool)))
    # sequence shape [T,H,W,3] with mask [T,H,W]
    seq_p, seq_g = np.stack([pred, gt]), np.stack([gt, gt])
    m = np.stack([left, left])
    assert M.pu21_psnr(seq_p, seq_g, mask=m) == pytest.approx(20 * math.log10(256.0 / d) + 10 * math.log10(2))


def test_psnr_luminance_mode():
    gt = np.ones((2, 2, 3))
    pred = np.full((2, 2, 3), 10.0)
    d = PU21_REF[1000.0] - PU21_REF[100.0]
    assert M.pu21_psnr(pred, gt, channels="y") == pytest.approx(20 * math.log10(256.0 / d), rel=1e-9)


def test_log_l1_known_value():
    gt = np.ones((2, 3, 3))
    pred = np.full((2, 3, 3), math.e)
    assert M.log_l1(pred, gt, eps=0.0) == pytest.approx(1.0)
    assert M.log_l1(pred, gt) == pytest.approx(abs(math.log(math.e + 1e-4) - math.log(1 + 1e-4)))
    mask = np.zeros((2, 3), bool)
    mask[0, 0] = True
    pred2 = gt.copy()
    pred2[0, 0] = math.e**2
    assert M.log_l1(pred2, gt, mask=mask, eps=0.0) == pytest.approx(2.0)
    assert M.log_l1(pred2, gt, mask=~mask, eps=0.0) == pytest.approx(0.0)
    assert math.isnan(M.log_l1(pred2, gt, mask=np.zeros((2, 3), bool)))


def test_temporal_consistency():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.01, 4.0, (5, 6, 7, 3))
    assert M.temporal_consistency(gt * 1, gt) == 0.0
    # a flicker of the prediction (every other frame 20 % brighter) is penalised
    flicker = gt * np.where(np.arange(5) % 2 == 0, 1.0, 1.2)[:, None, None, None]
    assert M.temporal_consistency(flicker, gt) > 1.0
    # a static error (same bias in every frame, from a static gt) is not temporal inconsistency
    static = np.repeat(gt[:1], 5, axis=0)
    assert M.temporal_consistency(static * 1.5, static) == pytest.approx(0.0)
    # known value: gt constant at 1.0 (100 cd/m2), pred alternates 1.0 / 10.0 -> |dPU| = PU(1000)-PU(100)
    g = np.ones((3, 2, 2, 3))
    p = g.copy()
    p[1] = 10.0
    assert M.temporal_consistency(p, g) == pytest.approx(PU21_REF[1000.0] - PU21_REF[100.0], rel=1e-9)
    assert math.isnan(M.temporal_consistency(g[:1], g[:1]))


def test_overexposed_mask():
    ldr = np.zeros((2, 3, 3), np.uint8)
    ldr[0, 0] = (255, 0, 0)
    ldr[0, 1] = (242, 242, 242)  # 242/255 = 0.949 < 0.95
    ldr[0, 2] = (0, 243, 0)  # 0.953
    m = M.overexposed_mask(ldr)
    assert m.dtype == bool and m.shape == (2, 3)
    assert m.tolist() == [[True, False, True], [False, False, False]]
    f = ldr.astype(np.float32) / 255
    assert (M.overexposed_mask(f) == m).all()
    assert M.overexposed_mask(f, threshold=0.5).sum() == 3
    assert M.overexposed_mask(np.stack([ldr, ldr])).shape == (2, 2, 3)


def test_cvvdp_optional():
    pytest.importorskip("pycvvdp")
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.05, 2.0, (2, 32, 32, 3)).astype(np.float32)
    assert M.cvvdp_jod(gt, gt, fps=24) == pytest.approx(10.0, abs=1e-3)
    noisy = gt * (1 + 0.3 * rng.standard_normal(gt.shape)).astype(np.float32)
    assert M.cvvdp_jod(noisy, gt, fps=24) < 9.9
