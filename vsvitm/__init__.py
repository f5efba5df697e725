"""vsvitm: video inverse tone mapping (LDR -> HDR) for VapourSynth, with temporal clues.

    import vsvitm
    hdr = vsvitm.ITM(clip)                    # RGBS, linear light, 1.0 = the input's white
    out = vsvitm.to_hdr10(hdr, sdr_white=203, peak=1000)

Attributes load lazily, so the training tools (vsvitm.training) import without VapourSynth.
"""
__all__ = ["ITM", "Tuning", "Backend", "to_hdr10", "to_hlg", "measure_light_level"]
__version__ = "0.1.0"

_WHERE = {"ITM": "itm", "Tuning": "tuning", "Backend": "backends", "to_hdr10": "hdr", "to_hlg": "hdr", "measure_light_level": "hdr"}


def __getattr__(name):
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'vsvitm' has no attribute {name!r}")
