"""Linear-light output of the plugin -> HDR10 (PQ) or HLG video, plus encoder command-line flags.

Input convention: RGBS/RGBH, linear light, BT.709 primaries, 1.0 = SDR white.
``to_hdr10`` / ``to_hlg`` place 1.0 at ``sdr_white`` cd/m² (BT.2408: 203), roll highlights off
softly below the peak, convert to BT.2020 and PQ / HLG with zimg (``core.resize``) and set the
colour and HDR10 metadata frame props (the names BestSource / L-SMASH / ffms2 use).

y4m carries no colour metadata: encode with ``hdr10_x265_args`` / ``hdr10_ffmpeg_args``.
``measure_light_level`` reads MaxCLL and MaxFALL (CTA-861.3) off the PQ output, for a second pass.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import vapoursynth as vs

from .colour import set_linear_props

__all__ = [
    "MasteringDisplay", "MASTERING_P3_D65", "MASTERING_BT2020", "rolloff_expr", "hdr10_metadata",
    "LightLevel", "measure_light_level", "to_hdr10", "to_hlg", "hdr10_x265_args", "hdr10_ffmpeg_args", "hlg_x265_args", "hlg_ffmpeg_args",
]

HLG_DISPLAY_PEAK = 1000.0  # zimg's HLG is display-referred for a 1000 cd/m² nominal display (BT.2100)


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 mastering display colour volume. Chromaticities are CIE 1931 xy, in R, G, B
    order (as the ``MasteringDisplayPrimariesX/Y`` frame props); luminances in cd/m².
    ``max_luminance=None`` means "the ``peak`` given to to_hdr10"."""
    primaries_x: tuple[float, float, float]
    primaries_y: tuple[float, float, float]
    white_x: float = 0.3127
    white_y: float = 0.3290
    min_luminance: float = 0.0001
    max_luminance: float | None = None


MASTERING_P3_D65 = MasteringDisplay((0.680, 0.265, 0.150), (0.320, 0.690, 0.060))
MASTERING_BT2020 = MasteringDisplay((0.708, 0.170, 0.131), (0.292, 0.797, 0.046))
_MASTERING_PRESETS = {"p3": MASTERING_P3_D65, "p3-d65": MASTERING_P3_D65, "display-p3": MASTERING_P3_D65,
                      "bt2020": MASTERING_BT2020, "2020": MASTERING_BT2020}


def _mastering(md, peak: float) -> MasteringDisplay:
    if isinstance(md, str):
        key = md.lower()
        if key not in _MASTERING_PRESETS:
            raise vs.Error(f"vsvitm: unknown mastering_display {md!r}; use 'p3', 'bt2020' or a "
                           f"vsvitm.hdr.MasteringDisplay")
        md = _MASTERING_PRESETS[key]
    if not isinstance(md, MasteringDisplay):
        raise vs.Error("vsvitm: mastering_display must be 'p3', 'bt2020' or a vsvitm.hdr.MasteringDisplay")
    if md.max_luminance is None:
        md = replace(md, max_luminance=float(peak))
    return md


def _check_levels(sdr_white: float, peak: float) -> None:
    if not (sdr_white > 0 and peak > 0):
        raise vs.Error(f"vsvitm: sdr_white and peak must be positive cd/m² values (got {sdr_white}, {peak})")
    if peak > 10000:
        raise vs.Error(f"vsvitm: peak {peak} cd/m² is above the PQ maximum of 10000")


def hdr10_metadata(peak: float = 1000.0, max_cll: float | None = None, max_fall: float | None = None,
                   mastering_display="p3") -> dict:
    """The HDR10 static metadata as frame props (BestSource/lsmas names and types).

    MaxCLL and MaxFALL default to 0, which CTA-861.3 defines as "unknown": they depend on the
    content. Pass the values ``measure_light_level`` gives for the clip (a first pass)."""
    md = _mastering(mastering_display, peak)
    cll = int(round(0 if max_cll is None else max_cll))
    fall = int(round(0 if max_fall is None else max_fall))
    if cll < 0 or fall < 0 or (fall > cll > 0):
        raise vs.Error(f"vsvitm: need 0 <= max_fall <= max_cll (got max_cll={cll}, max_fall={fall})")
    return {
        "MasteringDisplayPrimariesX": [float(v) for v in md.primaries_x],
        "MasteringDisplayPrimariesY": [float(v) for v in md.primaries_y],
        "MasteringDisplayWhitePointX": float(md.white_x),
        "MasteringDisplayWhitePointY": float(md.white_y),
        "MasteringDisplayMinLuminance": float(md.min_luminance),
        "MasteringDisplayMaxLuminance": float(md.max_luminance),
        "ContentLightLevelMax": cll,
        "ContentLightLevelAverage": fall,
    }


def rolloff_expr(sdr_white: float, peak: float, knee: float = 0.75) -> str:
    """std.Expr for clips (x, y, z) = the RGB planes rotated so that max(x, y, z) is the pixel's
    max(R, G, B). Relative linear in (1.0 = SDR white), relative linear out.

    With L = maxRGB · sdr_white (cd/m²) and K = knee · peak, each channel is scaled by g(L)/L,
    g(L) = L below K, K + (peak − K)(1 − exp(−(L − K)/(peak − K))) above: C¹ at K, strictly
    increasing, asymptotic to (never above) peak. Scaling by maxRGB keeps hue and saturation."""
    if not 0.0 < knee < 1.0:
        raise vs.Error(f"vsvitm: knee must be in (0, 1), got {knee}")
    w, p = float(sdr_white), float(peak)
    k = knee * p
    span = p - k
    m = "x y max z max"
    lum = f"{m} {w!r} *"
    g = f"{k!r} {span!r} 1 {lum} {k!r} - {-1.0 / span!r} * exp - * +"
    return f"{lum} {k!r} <= x x {g} * {lum} / ?"


def _prepare_linear(clip: vs.VideoNode, name: str, sdr_white: float, peak: float, roll_off: bool,
                    knee: float) -> vs.VideoNode:
    if not isinstance(clip, vs.VideoNode) or clip.format is None or clip.format.id == 0:
        raise vs.Error(f"{name}: expected a constant-format vs.VideoNode (linear RGBS/RGBH, as vsvitm.ITM outputs)")
    fmt = clip.format
    if fmt.color_family != vs.RGB or fmt.sample_type != vs.FLOAT:
        raise vs.Error(f"{name}: expected linear-light RGB float (RGBS or RGBH, 1.0 = SDR white, as "
                       f"vsvitm.ITM outputs), got {fmt.name}. Pass the ITM output directly; for other "
                       f"linear RGB use core.resize.Point(clip, format=vs.RGBS).")
    core = vs.core
    if fmt.bits_per_sample != 32:
        clip = core.resize.Point(clip, format=vs.RGBS)
    # Finite, non-negative (NaN -> 0, +Inf -> a huge but finite value the roll-off/clip handles).
    clip = core.std.Expr(clip, "x x = x 0 ? 0 max 1e6 min")
    if roll_off:
        rot1 = core.std.ShufflePlanes(clip, [1, 2, 0], vs.RGB)
        rot2 = core.std.ShufflePlanes(clip, [2, 0, 1], vs.RGB)
        clip = core.std.Expr([clip, rot1, rot2], rolloff_expr(sdr_white, peak, knee))
    else:
        clip = core.std.Expr(clip, f"x {peak / sdr_white!r} min")
    # Frame props win over resize's *_in arguments: overwrite whatever the input carried.
    return set_linear_props(clip)


def _convert(clip: vs.VideoNode, format, transfer: int, sdr_white: float, name: str) -> vs.VideoNode:
    out_fmt = vs.core.get_video_format(format.id if isinstance(format, vs.VideoFormat) else format)
    if out_fmt.color_family not in (vs.YUV, vs.RGB):
        raise vs.Error(f"{name}: format must be YUV or RGB (e.g. vs.YUV420P10), got {out_fmt.name}")
    kwargs = dict(format=out_fmt.id, transfer_in=vs.TRANSFER_LINEAR, primaries_in=vs.PRIMARIES_BT709,
                  transfer=transfer, primaries=vs.PRIMARIES_BT2020, nominal_luminance=float(sdr_white),
                  dither_type="none",
                  # zimg's LUT transfer is within 0.1 of a 10-bit code (and 6x faster at 1080p);
                  # float output gets the exact curve.
                  approximate_gamma=out_fmt.sample_type == vs.INTEGER)
    if out_fmt.color_family == vs.YUV:
        kwargs.update(matrix=vs.MATRIX_BT2020_NCL, range=int(vs.RANGE_LIMITED), chromaloc=0)
    else:
        kwargs.update(matrix=vs.MATRIX_RGB, range=int(vs.RANGE_FULL))
    return vs.core.resize.Bicubic(clip, **kwargs)


def to_hdr10(clip: vs.VideoNode, sdr_white: float = 203.0, peak: float = 1000.0, *, format=vs.YUV420P10,
             roll_off: bool = True, knee: float = 0.75, max_cll: float | None = None,
             max_fall: float | None = None, mastering_display="p3") -> vs.VideoNode:
    """Linear RGB (BT.709, 1.0 = SDR white) -> HDR10: PQ (ST 2084), BT.2020 NCL, limited range.

    sdr_white: cd/m² of linear 1.0 (BT.2408 reference white: 203 -> PQ code 0.5807, 10-bit Y' 573).
    peak:      highlights roll off softly from ``knee·peak`` towards ``peak`` (never above); with
               ``roll_off=False`` channels are hard-clipped at ``peak``.
    format:    output format (YUV420P10 default; any YUV/RGB format zimg supports).
    max_cll, max_fall, mastering_display: HDR10 static metadata props (see ``hdr10_metadata``);
               the same values must go to the encoder (``hdr10_x265_args``). None: 0, "unknown";
               ``measure_light_level`` on this function's output gives the content's values.
    """
    _check_levels(sdr_white, peak)
    meta = hdr10_metadata(peak, max_cll, max_fall, mastering_display)
    lin = _prepare_linear(clip, "to_hdr10", sdr_white, peak, roll_off, knee)
    out = _convert(lin, format, vs.TRANSFER_ST2084, sdr_white, "to_hdr10")
    return vs.core.std.SetFrameProps(out, **meta)


def to_hlg(clip: vs.VideoNode, sdr_white: float = 203.0, *, format=vs.YUV420P10, roll_off: bool = True,
           knee: float = 0.75) -> vs.VideoNode:
    """Linear RGB (BT.709, 1.0 = SDR white) -> BT.2100 HLG (ARIB STD-B67), BT.2020 NCL, limited range.

    Display-referred, for the 1000 cd/m² nominal display of BT.2100 (zimg's HLG): 1.0 is placed at
    ``sdr_white`` cd/m² (203 -> 75 % HLG signal, BT.2408) and highlights roll off towards 1000 cd/m²."""
    _check_levels(sdr_white, HLG_DISPLAY_PEAK)
    lin = _prepare_linear(clip, "to_hlg", sdr_white, HLG_DISPLAY_PEAK, roll_off, knee)
    return _convert(lin, format, vs.TRANSFER_ARIB_B67, sdr_white, "to_hlg")


class LightLevel(NamedTuple):
    """Content light levels in cd/m² (CTA-861.3 Annex A), as ``measure_light_level`` returns them.
    A clip's values are the largest of its segments' (measure segments apart and take the max)."""
    max_cll: float   # MaxCLL: the largest max(R, G, B) of any pixel of any frame
    max_fall: float  # MaxFALL: the largest frame average of max(R, G, B)


# SMPTE ST 2084 constants
_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32


def pq_eotf_expr(v: str = "x") -> str:
    """std.Expr: PQ signal ``v`` (0..1) -> absolute luminance in cd/m² (ST 2084 EOTF)."""
    e = f"{v} 0 max 1 min {1 / _PQ_M2!r} pow"
    return (f"{e} {_PQ_C1!r} - 0 max {_PQ_C2!r} {_PQ_C3!r} {e} * - / {1 / _PQ_M1!r} pow 10000 *")


def _progress_printer(total: int, label: str) -> Callable[[int], None]:
    """Progress on stderr (never stdout: vspipe writes video there): a line redrawn on a terminal,
    else a line every 10 %."""
    tty = sys.stderr.isatty()
    state = {"t": 0.0, "tenth": -1}

    def show(done: int) -> None:
        now = time.monotonic()
        if tty:
            if done == total or now - state["t"] >= 0.25:
                state["t"] = now
                sys.stderr.write(f"\r{label}: {done}/{total} frames" + ("\n" if done == total else ""))
                sys.stderr.flush()
        else:
            tenth = 10 * done // max(total, 1)
            if tenth != state["tenth"] and (tenth > state["tenth"] or done == total):
                state["tenth"] = tenth
                sys.stderr.write(f"{label}: {done}/{total} frames\n")
                sys.stderr.flush()
    return show


def measure_light_level(clip: vs.VideoNode, progress: bool | Callable[[int, int], None] = True) -> LightLevel:
    """MaxCLL and MaxFALL of a PQ clip (the output of ``to_hdr10``), per CTA-861.3 Annex A.

    Every frame is rendered once: each pixel is decoded to linear R, G, B in cd/m² (YUV through the
    clip's ``_Matrix``/``_Range`` props, 4:2:0 chroma upsampled bicubically), max(R, G, B) is taken;
    MaxCLL is its largest value over the clip, MaxFALL the largest of its frame averages.
    Pass the result to ``to_hdr10(max_cll=..., max_fall=...)`` and ``hdr10_x265_args`` for the
    encode (a second pass). progress: True writes frames done to stderr; a callable gets
    ``(done, total)``; False says nothing."""
    name = "vsvitm.hdr.measure_light_level"
    if not isinstance(clip, vs.VideoNode) or clip.format is None or clip.format.id == 0:
        raise vs.Error(f"{name}: expected a constant-format vs.VideoNode (the output of vsvitm.to_hdr10)")
    fmt = clip.format
    if fmt.color_family not in (vs.YUV, vs.RGB):
        raise vs.Error(f"{name}: expected a YUV or RGB clip (the output of vsvitm.to_hdr10), got {fmt.name}")
    props = clip.get_frame(0).props
    transfer = props.get("_Transfer", vs.TRANSFER_UNSPECIFIED)
    if transfer != vs.TRANSFER_ST2084:
        raise vs.Error(f"{name}: expected PQ video (frame prop _Transfer=16, as vsvitm.to_hdr10 sets it), "
                       f"got _Transfer={int(transfer)}. Measure the output of to_hdr10; for PQ video read "
                       f"without colour props (y4m, raw) tag it first: core.std.SetFrameProps(clip, "
                       f"_Transfer=16, _Matrix=9, _Primaries=9, _Range=0)")
    if fmt.color_family == vs.YUV and props.get("_Matrix", vs.MATRIX_UNSPECIFIED) in (vs.MATRIX_UNSPECIFIED, vs.MATRIX_RGB):
        raise vs.Error(f"{name}: the YUV clip has no usable _Matrix frame prop; set it (BT.2020 NCL: "
                       f"core.std.SetFrameProps(clip, _Matrix=9))")
    core = vs.core
    rgb = core.resize.Bicubic(clip, format=vs.RGBS)  # matrix and range from the props; the transfer stays PQ
    r, g, b = (core.std.ShufflePlanes(rgb, i, vs.GRAY) for i in range(3))
    nits = core.std.Expr([r, g, b], pq_eotf_expr("x y max z max"), format=vs.GRAYS)
    stats = core.std.PlaneStats(nits)
    total = stats.num_frames
    report = (progress if callable(progress) else
              (lambda done, _t, _s=_progress_printer(total, "vsvitm: measuring MaxCLL/MaxFALL"): _s(done))
              if progress else None)
    cll = fall = 0.0
    for done, f in enumerate(stats.frames(close=True), 1):
        cll = max(cll, float(f.props["PlaneStatsMax"]))
        fall = max(fall, float(f.props["PlaneStatsAverage"]))
        if report is not None:
            report(done, total)
    return LightLevel(cll, fall)


def _master_display_string(md: MasteringDisplay) -> str:
    """x265 / HEVC SEI syntax: chromaticities in 0.00002 units, luminance in 0.0001 cd/m², G B R order."""
    def xy(i: int) -> str:
        return f"{round(md.primaries_x[i] * 50000)},{round(md.primaries_y[i] * 50000)}"
    return (f"G({xy(1)})B({xy(2)})R({xy(0)})"
            f"WP({round(md.white_x * 50000)},{round(md.white_y * 50000)})"
            f"L({round(md.max_luminance * 10000)},{round(md.min_luminance * 10000)})")


def hdr10_x265_args(peak: float = 1000.0, max_cll: float | None = None, max_fall: float | None = None, *,
                    mastering_display="p3") -> list[str]:
    """x265 CLI flags for the output of ``to_hdr10`` (same defaults), to follow ``--y4m --input -``."""
    meta = hdr10_metadata(peak, max_cll, max_fall, mastering_display)
    md = _mastering(mastering_display, peak)
    return ["--output-depth", "10", "--hdr10", "--hdr10-opt", "--repeat-headers",
            "--colorprim", "bt2020", "--transfer", "smpte2084", "--colormatrix", "bt2020nc",
            "--range", "limited", "--chromaloc", "0",
            "--master-display", _master_display_string(md),
            "--max-cll", f"{meta['ContentLightLevelMax']},{meta['ContentLightLevelAverage']}"]


def hdr10_ffmpeg_args(peak: float = 1000.0, max_cll: float | None = None, max_fall: float | None = None, *,
                      mastering_display="p3", pix_fmt: str = "yuv420p10le") -> list[str]:
    """ffmpeg output options (libx265) for the output of ``to_hdr10``: put them after ``-i -``."""
    meta = hdr10_metadata(peak, max_cll, max_fall, mastering_display)
    md = _mastering(mastering_display, peak)
    x265 = ":".join([
        "hdr10=1", "hdr10-opt=1", "repeat-headers=1", "colorprim=bt2020", "transfer=smpte2084",
        "colormatrix=bt2020nc", "range=limited", "chromaloc=0",
        f"master-display={_master_display_string(md)}",
        f"max-cll={meta['ContentLightLevelMax']},{meta['ContentLightLevelAverage']}"])
    return ["-c:v", "libx265", "-pix_fmt", pix_fmt, "-color_primaries", "bt2020", "-color_trc", "smpte2084",
            "-colorspace", "bt2020nc", "-color_range", "tv", "-chroma_sample_location", "left",
            "-x265-params", x265]


def hlg_x265_args() -> list[str]:
    """x265 CLI flags for the output of ``to_hlg``."""
    return ["--output-depth", "10", "--repeat-headers", "--colorprim", "bt2020", "--transfer", "arib-std-b67",
            "--colormatrix", "bt2020nc", "--range", "limited", "--chromaloc", "0"]


def hlg_ffmpeg_args(pix_fmt: str = "yuv420p10le") -> list[str]:
    """ffmpeg output options (libx265) for the output of ``to_hlg``."""
    return ["-c:v", "libx265", "-pix_fmt", pix_fmt, "-color_primaries", "bt2020", "-color_trc", "arib-std-b67",
            "-colorspace", "bt2020nc", "-color_range", "tv", "-chroma_sample_location", "left",
            "-x265-params", "repeat-headers=1:colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc:"
            "range=limited:chromaloc=0"]
