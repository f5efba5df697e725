"""vsvitm.colour: input validation and conversion to display-referred full-range RGBS."""
import warnings

import numpy as np
import pytest
import vapoursynth as vs

from vsvitm.colour import set_linear_props, to_display_rgb, validate_clip
from vsvitm.vsnp import clip_from_array, frame_to_array

core = vs.core


def blank(fmt, color, w=8, h=8, **props):
    c = core.std.BlankClip(format=fmt, width=w, height=h, length=1, color=color)
    return core.std.SetFrameProps(c, **props) if props else c


def rgb_of(clip, n=0):
    f = clip.get_frame(n)
    assert f.format.id == vs.RGBS
    return np.stack([np.asarray(f[p]) for p in range(3)], axis=-1)


def pixel(clip):
    a = rgb_of(clip)
    assert np.all(a == a[:1, :1]), "a flat input must give a flat output"
    return a[0, 0].astype(np.float64)


def ycbcr_to_rgb(y, cb, cr, kr, kb):
    """Reference: normalised Y' in [0, 1], Cb/Cr in [-0.5, 0.5] -> R'G'B'."""
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return np.clip([r, g, b], 0, 1)


BT709 = (0.2126, 0.0722)
BT601 = (0.299, 0.114)


@pytest.mark.parametrize("fmt,white,black,grey", [
    (vs.YUV420P8, 235, 16, 128),
    (vs.YUV444P8, 235, 16, 128),
    (vs.YUV420P10, 940, 64, 512),
    (vs.YUV422P10, 940, 64, 512),
    (vs.YUV420P16, 235 << 8, 16 << 8, 128 << 8),
    (vs.YUV444P16, 235 << 8, 16 << 8, 128 << 8),
])
def test_limited_yuv_white_and_black(fmt, white, black, grey):
    assert np.allclose(pixel(to_display_rgb(blank(fmt, [white, grey, grey]))), 1.0, atol=1e-5)
    assert np.allclose(pixel(to_display_rgb(blank(fmt, [black, grey, grey]))), 0.0, atol=1e-5)


def test_superwhite_and_overshoot_are_clipped():
    out = pixel(to_display_rgb(blank(vs.YUV444P8, [255, 128, 255])))  # superwhite, out-of-gamut red
    assert out.max() == pytest.approx(1.0) and out.min() >= 0.0


def test_missing_matrix_defaults_to_bt709_and_props_are_honoured():
    y, u, v = 128, 64, 200
    ref = lambda m: ycbcr_to_rgb((y - 16) / 219, (u - 128) / 224, (v - 128) / 224, *m)
    assert np.allclose(pixel(to_display_rgb(blank(vs.YUV444P8, [y, u, v]))), ref(BT709), atol=1e-4)
    unspecified = blank(vs.YUV444P8, [y, u, v], _Matrix=2)
    assert np.allclose(pixel(to_display_rgb(unspecified)), ref(BT709), atol=1e-4)
    bt601 = blank(vs.YUV444P8, [y, u, v], _Matrix=6)
    assert np.allclose(pixel(to_display_rgb(bt601)), ref(BT601), atol=1e-4)
    # an explicit argument overrides the frame prop
    assert np.allclose(pixel(to_display_rgb(bt601, matrix="709")), ref(BT709), atol=1e-4)
    assert np.allclose(pixel(to_display_rgb(blank(vs.YUV444P8, [y, u, v]), matrix=vs.MATRIX_ST170_M)),
                       ref(BT601), atol=1e-4)


def test_full_range_props_honoured():
    full = blank(vs.YUV420P8, [255, 128, 128], _Range=int(vs.RANGE_FULL))
    assert np.allclose(pixel(to_display_rgb(full)), 1.0, atol=1e-5)
    mid = blank(vs.YUV420P8, [128, 128, 128], _Range=int(vs.RANGE_FULL))
    assert np.allclose(pixel(to_display_rgb(mid)), 128 / 255, atol=1e-5)
    assert np.allclose(pixel(to_display_rgb(blank(vs.YUV420P8, [128, 128, 128]), range="full")), 128 / 255, atol=1e-5)
    # a full-range flag can be overridden too
    assert np.allclose(pixel(to_display_rgb(full, range=vs.RANGE_LIMITED)), 1.0, atol=1e-5)


def test_legacy_colorrange_prop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy_full = blank(vs.YUV420P8, [128, 128, 128], _ColorRange=0)  # old semantics: 0 = full
        legacy_limited = blank(vs.YUV420P8, [235, 128, 128], _ColorRange=1)
    assert np.allclose(pixel(to_display_rgb(legacy_full)), 128 / 255, atol=1e-5)
    assert np.allclose(pixel(to_display_rgb(legacy_limited)), 1.0, atol=1e-5)


@pytest.mark.parametrize("fmt,value,scale", [(vs.RGB24, [200, 100, 50], 255), (vs.RGB48, [51400, 25700, 12850], 65535)])
def test_integer_rgb_is_full_range(fmt, value, scale):
    assert np.allclose(pixel(to_display_rgb(blank(fmt, value))), np.array(value) / scale, atol=1e-5)


def test_rgb_with_leftover_yuv_matrix_prop_and_limited_rgb():
    assert np.allclose(pixel(to_display_rgb(blank(vs.RGB24, [255, 0, 0], _Matrix=1))), [1, 0, 0], atol=1e-6)
    limited = blank(vs.RGB24, [235, 16, 126], _Range=int(vs.RANGE_LIMITED))
    assert np.allclose(pixel(to_display_rgb(limited)), [1, 0, 110 / 219], atol=1e-5)


@pytest.mark.parametrize("fmt,value,props,expect", [
    (vs.GRAY8, 235, {}, 1.0),
    (vs.GRAY8, 16, {}, 0.0),
    (vs.GRAY16, 65535, {"_Range": 1}, 1.0),
    (vs.GRAY16, 32768, {"_Range": 1}, 32768 / 65535),
])
def test_gray_replicates(fmt, value, props, expect):
    assert np.allclose(pixel(to_display_rgb(blank(fmt, [value], **props))), expect, atol=1e-5)


@pytest.mark.parametrize("fmt", [vs.RGBH, vs.RGBS])
def test_float_rgb_clamped(fmt):
    assert np.allclose(pixel(to_display_rgb(blank(fmt, [0.25, 0.5, 2.0]))), [0.25, 0.5, 1.0], atol=1e-3)
    assert np.allclose(pixel(to_display_rgb(blank(fmt, [-0.5, 0.0, 1.0]))), [0.0, 0.0, 1.0], atol=1e-3)


@pytest.mark.parametrize("fmt", [vs.RGBH, vs.RGBS, vs.YUV444PS, vs.GRAYS])
def test_nan_and_inf_never_propagate(fmt):
    planes = vs.core.get_video_format(fmt).num_planes
    src = core.std.Expr(blank(fmt, [0.5] * planes), ["0 0 /", "1 0 /", "-1 0 /"][:planes])
    out = rgb_of(to_display_rgb(src))
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1


def test_transfer_and_primaries_props_never_convert():
    base = pixel(to_display_rgb(blank(vs.YUV444P8, [150, 100, 180])))
    pq = to_display_rgb(blank(vs.YUV444P8, [150, 100, 180], _Transfer=16, _Primaries=9))
    assert np.allclose(pixel(pq), base, atol=1e-6)
    props = pq.get_frame(0).props
    assert props["_Matrix"] == 0 and props["_Range"] == vs.RANGE_FULL and props["_Transfer"] == 16
    labelled = to_display_rgb(blank(vs.YUV444P8, [150, 100, 180]), transfer=vs.TRANSFER_IEC_61966_2_1,
                              primaries=vs.PRIMARIES_BT709)
    assert np.allclose(pixel(labelled), base, atol=1e-6)
    assert labelled.get_frame(0).props["_Transfer"] == 13


def test_set_linear_props():
    props = set_linear_props(blank(vs.RGBS, [1, 1, 1], _Transfer=1, _Range=0)).get_frame(0).props
    assert props["_Transfer"] == 8 and props["_Primaries"] == 1 and props["_Matrix"] == 0
    assert props["_Range"] == vs.RANGE_FULL == 1


def test_variable_format_gives_a_helpful_error():
    var = core.std.Splice([blank(vs.YUV420P8, [16, 128, 128]), blank(vs.RGB24, [0, 0, 0], w=16)], mismatch=True)
    with pytest.raises(vs.Error, match=r"variable format.*resize\.Bicubic\(.*format="):
        to_display_rgb(var)
    var_size = core.std.Splice([blank(vs.YUV420P8, [16, 128, 128]), blank(vs.YUV420P8, [16, 128, 128], w=16)],
                               mismatch=True)
    with pytest.raises(vs.Error, match=r"variable size.*width="):
        validate_clip(var_size, "ITM")


def test_other_bad_inputs():
    with pytest.raises(vs.Error, match="VideoNode"):
        validate_clip(core.std.BlankAudio(), "ITM")
    with pytest.raises(vs.Error, match="VideoNode"):
        validate_clip(np.zeros((4, 4)), "ITM")
    fmt20 = core.query_video_format(vs.YUV, vs.INTEGER, 20, 0, 0)
    with pytest.raises(vs.Error, match="unsupported sample type.*8-16 bit"):
        validate_clip(core.std.BlankClip(format=fmt20.id, width=4, height=4), "ITM")
    with pytest.raises(vs.Error, match="unknown matrix"):
        to_display_rgb(blank(vs.YUV420P8, [16, 128, 128]), matrix="bogus")


def test_sample_clip_decodes():
    """samples/london_pan_320x240.mp4 through BestSource (pip install vapoursynth-bestsource)."""
    from pathlib import Path
    sample = Path(__file__).resolve().parents[1] / "samples" / "london_pan_320x240.mp4"
    if not hasattr(core, "bs"):
        pytest.skip("BestSource not installed (pip install vapoursynth-bestsource)")
    clip = core.bs.VideoSource(str(sample))
    assert (clip.width, clip.height, clip.num_frames, clip.fps) == (320, 240, 300, 60)
    props = clip.get_frame(0).props
    assert props["_Range"] == vs.RANGE_FULL and props["_Matrix"] == 6  # yuvj420p, BT.601
    rgb = rgb_of(to_display_rgb(clip), 150)
    assert rgb.shape == (240, 320, 3) and 0.2 < rgb.mean() < 0.8 and rgb.max() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("fmt,color", [
    (vs.YUV420P8, [255, 128, 255]),      # superwhite, out-of-gamut red: clamped
    (vs.YUV444P8, [16, 128, 128]),
    (vs.YUV420P10, [700, 300, 800]),
    (vs.RGB24, [255, 7, 128]),
    (vs.RGBS, [2.0, -0.5, 0.25]),
    (vs.GRAY16, [40000]),
])
def test_rgb48_form_matches_rgbs(fmt, color):
    """to_display_rgb(format=vs.RGB48), what ITM holds its frames as: the RGBS code values to within
    half a 16-bit step (clamped to [0, 1] by zimg), exact for 8-bit RGB; NaN/Inf still become finite.
    format=vs.RGB24 (ITM's references from 8-bit sources): within half an 8-bit step."""
    from vsvitm.vsnp import frame_to_code
    src = blank(fmt, color, w=16, h=8)
    src = core.std.Expr(src, ["x 0 0 / *"] + ["x"] * (src.format.num_planes - 1)) if fmt == vs.RGBS else src
    want = rgb_of(to_display_rgb(src))
    f = to_display_rgb(src, format=vs.RGB48).get_frame(0)
    assert f.format.id == vs.RGB48
    got = frame_to_code(f)
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np.nan_to_num(want), atol=0.51 / 65535 + 1e-7)
    if fmt == vs.RGB24:
        np.testing.assert_array_equal(np.round(got * 255), np.array(color, np.float32)[None, None].repeat(8, 0).repeat(16, 1))
    f8 = to_display_rgb(src, format=vs.RGB24).get_frame(0)   # ITM's references from 8-bit sources
    assert f8.format.id == vs.RGB24
    np.testing.assert_allclose(frame_to_code(f8), np.nan_to_num(want), atol=0.51 / 255 + 1e-7)
    with pytest.raises(ValueError, match="RGBS, vs.RGB48 or vs.RGB24"):
        to_display_rgb(src, format=vs.RGBH)
