"""vsvitm.prep: network inputs (the paper's formula) and padded buffers, identical at training and run time."""
import numpy as np
import pytest


@pytest.mark.parametrize("transfer", ["gamma2.2", "srgb", "bt1886"])
@pytest.mark.parametrize("ratio", [1.0, 0.25, 7.0, 300.0])
def test_net_input_is_the_papers_formula(transfer, ratio):
    """prep.net_input (scaled and clipped after the pow, no pow at all for gamma 2.2) equals the
    definition min(f^-1(L) * ratio, MAX_REL) ** (1/2.2) plus the mask, within float rounding,
    out-of-range code values included."""
    from vsvitm.curves import overexposure_mask, to_linear
    from vsvitm.prep import MAX_REL, net_input
    code = np.random.default_rng(3).random((9, 11, 3)).astype(np.float32) * 1.3 - 0.1
    want = np.concatenate([np.power(np.minimum(to_linear(code, transfer) * np.float32(ratio), MAX_REL), 1 / 2.2)
                           .transpose(2, 0, 1), overexposure_mask(code).transpose(2, 0, 1)])
    got = net_input(code, transfer, ratio)
    assert got.dtype == np.float32 and got.shape == (4, 9, 11)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_padded_buffers_equal_pad_to():
    """fill_padded (the engine writes inputs into padded buffers in place) and pad_to (built on it)
    = numpy's edge padding."""
    from vsvitm.prep import fill_padded, net_input, pad_to
    code = np.random.default_rng(6).random((13, 21, 3)).astype(np.float32)
    want = np.pad(net_input(code, ratio=3.0), [(0, 0), (0, 3), (0, 3)], mode="edge")
    buf = np.full((4, 16, 24), np.nan, np.float32)
    net_input(code, ratio=3.0, out=buf[:, :13, :21])
    np.testing.assert_array_equal(fill_padded(buf, 13, 21), want)
    padded, size = pad_to(net_input(code, ratio=3.0), 8)
    assert size == (13, 21) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded, want)
    same = np.ones((2, 16, 24), np.float16)
    assert pad_to(same, 8)[0] is same
