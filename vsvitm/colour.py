"""Input checks and colour conversion to display-referred RGB (VapourSynth, zimg via core.resize).

``to_display_rgb`` turns any constant-format clip into full-range RGBS code values in [0, 1]
(still gamma-encoded: the plugin linearises with its own inverse camera curve afterwards).
``set_linear_props`` labels a linear-light BT.709 RGB clip so that ``core.resize`` (which prefers
frame props over its ``*_in`` arguments) and previewers interpret it correctly.
"""
from __future__ import annotations

import vapoursynth as vs

__all__ = ["validate_clip", "to_display_rgb", "set_linear_props", "sanitize_expr"]

# zimg / ITU-T H.273 names accepted for the ``matrix`` argument.
_MATRIX_NAMES = {
    "rgb": 0, "gbr": 0, "709": 1, "bt709": 1, "unspec": 2, "fcc": 4, "470bg": 5, "bt470bg": 5,
    "601": 6, "170m": 6, "smpte170m": 6, "bt601": 6, "240m": 7, "smpte240m": 7, "ycgco": 8,
    "2020ncl": 9, "bt2020nc": 9, "2020cl": 10, "bt2020c": 10, "chromancl": 12, "chromacl": 13,
    "ictcp": 14,
}
_RANGE_NAMES = {"full": 1, "pc": 1, "jpeg": 1, "limited": 0, "tv": 0, "mpeg": 0}

# NaN -> 0, then clamp to [lo, hi].  ``x x =`` is false only for NaN.
def sanitize_expr(lo: float = 0.0, hi: float = 1.0) -> str:
    """std.Expr string replacing NaN with 0 and clamping to [lo, hi] (+-Inf clamp to the bounds)."""
    return f"x x = x 0 ? {lo:g} max {hi:g} min"


def _core() -> vs.Core:
    return vs.core


def validate_clip(clip, name: str = "ITM") -> None:
    """Raise ``vs.Error`` (naming the problem and the fix) unless ``clip`` is a usable video clip:
    a ``vs.VideoNode`` of constant format and size, GRAY/YUV/RGB, 8-16 bit integer or 16/32-bit float."""
    if not isinstance(clip, vs.VideoNode):
        kind = type(clip).__name__
        hint = " (an audio clip; pass the video node from your source filter)" if isinstance(clip, vs.AudioNode) else ""
        raise vs.Error(f"{name}: expected a video clip (vs.VideoNode), got {kind}{hint}.")
    fmt = clip.format
    variable_format = fmt is None or fmt.id == 0 or fmt.color_family == vs.UNDEFINED
    variable_size = clip.width == 0 or clip.height == 0
    if variable_format or variable_size:
        what = " and ".join(w for w, bad in (("format", variable_format), ("size", variable_size)) if bad)
        raise vs.Error(
            f"{name}: the clip has a variable {what}; only constant-format, constant-size clips are "
            f"supported. Convert it first, e.g. clip = core.resize.Bicubic(clip, format=vs.YUV420P8, "
            f"width=1920, height=1080) (pick the format and size you want).")
    if fmt.color_family not in (vs.GRAY, vs.YUV, vs.RGB):
        raise vs.Error(f"{name}: unsupported colour family {fmt.color_family.name}; use GRAY, YUV or RGB "
                       f"(convert with core.resize.Bicubic(clip, format=vs.RGB24)).")
    if fmt.sample_type == vs.INTEGER:
        ok = 8 <= fmt.bits_per_sample <= 16
    else:
        ok = fmt.bits_per_sample in (16, 32)
    if not ok:
        raise vs.Error(
            f"{name}: unsupported sample type {fmt.name} ({fmt.bits_per_sample}-bit "
            f"{'integer' if fmt.sample_type == vs.INTEGER else 'float'}); supported are 8-16 bit integer, "
            f"half (16-bit) and single (32-bit) float. Convert first, e.g. "
            f"core.resize.Point(clip, format=vs.RGBS).")


def _parse_matrix(matrix) -> int:
    if isinstance(matrix, str):
        key = matrix.lower().replace("-", "").replace("_", "").replace(".", "")
        if key not in _MATRIX_NAMES:
            raise vs.Error(f"to_display_rgb: unknown matrix {matrix!r}; use an int (vs.MATRIX_BT709 ...) or "
                           f"one of {', '.join(sorted(_MATRIX_NAMES))}")
        return _MATRIX_NAMES[key]
    return int(matrix)


def _parse_range(rng) -> int:
    """-> ``_Range`` value: 1 = full (vs.RANGE_FULL), 0 = limited (vs.RANGE_LIMITED)."""
    if isinstance(rng, str):
        key = rng.lower()
        if key not in _RANGE_NAMES:
            raise vs.Error(f"to_display_rgb: unknown range {rng!r}; use 'full' or 'limited' "
                           f"(or vs.RANGE_FULL / vs.RANGE_LIMITED)")
        return _RANGE_NAMES[key]
    if isinstance(rng, bool) or int(rng) not in (0, 1):
        raise vs.Error(f"to_display_rgb: range must be vs.RANGE_FULL (1) or vs.RANGE_LIMITED (0), got {rng!r}")
    return int(rng)


# Frame prop values zimg converts with no further parameters; others (garbage, reserved, or matrices
# that need more, e.g. ICtCp) would fail every frame mid-encode, so they are replaced (with a warning).
_OK_PROPS = {
    "_Matrix": {1, 2, 4, 5, 6, 7, 8, 9},
    "_Transfer": {1, 2, *range(4, 19)},
    "_Primaries": {1, 2, *range(4, 13), 22},
    "_ChromaLocation": set(range(6)),
    "_Range": {0, 1},
}
_warned: set = set()


def _sanitize_props(clip: vs.VideoNode, fam) -> vs.VideoNode:
    """Per frame: unusable colour props -> BT.709 matrix (2020 CL -> 2020 NCL) or removed (unspecified)."""
    import logging

    def fix(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        bad = {k: f.props[k] for k, ok in _OK_PROPS.items()
               if k in f.props and not (isinstance(f.props[k], int) and f.props[k] in ok)}
        if fam == vs.RGB:
            bad.pop("_Matrix", None)  # RGB: set to 0 by the caller
        if not bad:
            return f
        out = f.copy()
        for k, v in bad.items():
            if k == "_Matrix":
                out.props[k] = 9 if v == 10 else 1
            else:
                del out.props[k]
            if (k, repr(v)) not in _warned:
                _warned.add((k, repr(v)))
                logging.getLogger("vsvitm").warning(
                    f"vsvitm: frame {n} has {k}={v!r}, which cannot be converted; using "
                    f"{('BT.2020 NCL' if v == 10 else 'BT.709') if k == '_Matrix' else 'the default'} instead "
                    f"(set the right value with core.std.SetFrameProps(clip, {k}=...) to silence this)")
        return out

    return _core().std.ModifyFrame(clip, clip, fix)


def to_display_rgb(clip: vs.VideoNode, *, matrix=None, transfer=None, primaries=None, range=None,
                   name: str = "ITM", format: int = vs.RGBS) -> vs.VideoNode:
    """Any constant-format clip -> RGBS, full range, display-referred code values clamped to [0, 1].
    format=vs.RGB48: the same code values as 16-bit integers (65535 = 1; exact for 8-bit sources,
    within 2^-17 otherwise) in half the memory: what ITM holds its source frames as. vs.RGB24:
    rounded to 8 bits (ITM's references from 8-bit sources).

    The clip's own frame props decide the conversion: ``_Matrix`` (BT.709 when missing or
    unspecified) and ``_Range`` (the legacy ``_ColorRange`` is mapped onto it by VapourSynth; missing
    means limited for YUV and GRAY, full for RGB, as zimg does). Float YUV is always full range.

    Overrides (they replace the frame props, which ``core.resize`` would otherwise prefer):
      matrix:    int (``vs.MATRIX_BT709``, 6 = BT.601 ...) or a name ("709", "170m", "2020ncl" ...);
                 only used for YUV input.
      range:     "full"/"limited" or ``vs.RANGE_FULL``/``vs.RANGE_LIMITED`` (``_Range`` semantics).
      transfer, primaries: ints written to ``_Transfer``/``_Primaries`` on the output as a label of
                 what the code values are; no transfer or gamut conversion is ever done here.

    Superwhite/superblack, chroma-resampling overshoot, float values outside [0, 1] and NaN/Inf are
    sanitised: NaN -> 0, then clamped to [0, 1]. GRAY is replicated to R=G=B.
    """
    validate_clip(clip, name)
    core = _core()
    fmt = clip.format
    fam = fmt.color_family

    props: dict[str, int] = {}
    if fam == vs.RGB:
        props["_Matrix"] = 0  # a leftover YUV matrix prop on RGB makes zimg fail
    elif fam == vs.YUV and matrix is not None:
        props["_Matrix"] = _parse_matrix(matrix)
    if range is not None:
        props["_Range"] = _parse_range(range)
    if transfer is not None:
        props["_Transfer"] = int(transfer)
    if primaries is not None:
        props["_Primaries"] = int(primaries)
    src = _sanitize_props(clip, fam)
    src = core.std.SetFrameProps(src, **props) if props else src

    if fmt.sample_type == vs.FLOAT:
        # Sanitise before the matrix so one bad sample cannot turn into Inf - Inf = NaN.
        if fam == vs.YUV:
            src = core.std.Expr(src, [sanitize_expr(0, 1), sanitize_expr(-0.5, 0.5), sanitize_expr(-0.5, 0.5)])
        else:
            src = core.std.Expr(src, sanitize_expr(0, 1))

    subsampled = fam == vs.YUV and (fmt.subsampling_w or fmt.subsampling_h)
    resize = core.resize.Bicubic if subsampled else core.resize.Point
    kwargs = {"matrix_in": vs.MATRIX_BT709} if fam == vs.YUV else {}
    # No transfer/primaries arguments: zimg keeps them as they are (no conversion), and the
    # output only changes matrix (-> RGB) and range (-> full).
    if format not in (vs.RGBS, vs.RGB48, vs.RGB24):
        raise ValueError(f"to_display_rgb: format must be vs.RGBS, vs.RGB48 or vs.RGB24, got {format!r}")
    rgb = resize(src, format=format, **kwargs)
    # integer output is clamped to its range by zimg itself
    return core.std.Expr(rgb, sanitize_expr(0, 1)) if format == vs.RGBS else rgb


def set_linear_props(clip: vs.VideoNode) -> vs.VideoNode:
    """Label a clip as linear-light RGB, BT.709 primaries, full range:
    ``_Transfer=8`` (linear), ``_Primaries=1`` (BT.709), ``_Matrix=0`` (RGB), ``_Range=1``
    (``vs.RANGE_FULL``; R74+ semantics, the deprecated ``_ColorRange`` is linked to it by the core)."""
    return _core().std.SetFrameProps(clip, _Transfer=vs.TRANSFER_LINEAR, _Primaries=vs.PRIMARIES_BT709,
                                     _Matrix=vs.MATRIX_RGB, _Range=int(vs.RANGE_FULL))
