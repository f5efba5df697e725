"""vsvitm.vsnp: VapourSynth frames <-> numpy arrays."""
import numpy as np
import pytest
import vapoursynth as vs

from vsvitm.vsnp import clip_from_array, frame_to_array

core = vs.core


@pytest.mark.parametrize("fmt", [vs.RGB24, vs.RGB30, vs.RGB48, vs.RGBS, vs.RGBH, vs.GRAYS, vs.GRAY8])
@pytest.mark.parametrize("w,h", [(37, 19), (7, 5)])
def test_frame_to_array_any_format_and_stride(fmt, w, h):
    """frame_to_array (OpenCV's interleave for 3-plane 8/16-bit and float frames, numpy otherwise)
    gives exactly the planes, whatever the rows' padding of odd widths."""
    rng = np.random.default_rng(w)
    base = clip_from_array(rng.random((1, h, w, 3)).astype(np.float32))
    f = vs.core.resize.Point(base, format=fmt, matrix_s="709" if fmt in (vs.GRAYS, vs.GRAY8) else None).get_frame(0)
    want = np.stack([np.asarray(f[p]) for p in range(f.format.num_planes)], axis=-1)
    got = frame_to_array(f)
    assert got.dtype == want.dtype and got.shape == (h, w, f.format.num_planes)
    assert np.array_equal(got, want) and want.astype(np.float64).std() > 0
