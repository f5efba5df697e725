"""MaxCLL and MaxFALL (CTA-861.3) of a VapourSynth script's PQ output, for the encoder's --max-cll
(vsvitm-light-level).

    vsvitm-light-level script.vpy [-a key=value ...] [--output 0] [--start N] [--end N]
The first pass of a two-pass HDR10 encode: renders every frame of the output once (the output of
vsvitm.to_hdr10, or any clip with _Transfer=16), progress on stderr, and prints "MaxCLL,MaxFALL" in
whole cd/m² on stdout, as x265's --max-cll and libx265's max-cll= take them:

    vspipe -c y4m script.vpy - | x265 ... --max-cll "$(vsvitm-light-level script.vpy)" ...

--start/--end measure one segment (inclusive, as vspipe's): a whole clip's values are the largest
of its segments' (what a render farm collects per segment).
"""
from __future__ import annotations

import argparse
import runpy
import sys


def load_output(script: str, args: dict[str, str], index: int = 0):
    """Run a .vpy script as vspipe would (with `-a` values as globals) and return its output `index`.

    script: the .vpy file.
    args: its globals, as vspipe's -a KEY=VALUE.
    index: the output index.
    """
    import vapoursynth as vs
    vs.clear_outputs()
    runpy.run_path(script, init_globals=dict(args), run_name="__vapoursynth__")
    try:
        out = vs.get_output(index)
    except (KeyError, IndexError) as e:
        raise SystemExit(f"light_level: {script} sets no output {index} (clip.set_output({index}))") from e
    clip = getattr(out, "clip", out)
    if not isinstance(clip, vs.VideoNode):
        raise SystemExit(f"light_level: output {index} of {script} is not video")
    return clip


def main(argv=None) -> int:
    """Entry point of vsvitm-light-level: prints "MaxCLL,MaxFALL" on stdout.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script")
    ap.add_argument("-a", "--arg", action="append", default=[], metavar="KEY=VALUE",
                    help="a global for the script, as vspipe's -a")
    ap.add_argument("-o", "--output", type=int, default=0, help="output index (default 0)")
    ap.add_argument("-s", "--start", type=int, default=None, help="first frame (inclusive)")
    ap.add_argument("-e", "--end", type=int, default=None, help="last frame (inclusive)")
    a = ap.parse_args(argv)
    bad = [kv for kv in a.arg if "=" not in kv]
    if bad:
        ap.error(f"-a takes KEY=VALUE, got {bad[0]!r}")
    from vsvitm.hdr import measure_light_level
    clip = load_output(a.script, dict(kv.split("=", 1) for kv in a.arg), a.output)
    start = a.start or 0
    end = clip.num_frames - 1 if a.end is None else a.end
    if not 0 <= start <= end < clip.num_frames:
        ap.error(f"--start/--end must satisfy 0 <= start <= end < {clip.num_frames} (got {start}, {end})")
    ll = measure_light_level(clip[start:end + 1])
    print(f"light_level: MaxCLL {ll.max_cll:.1f} cd/m², MaxFALL {ll.max_fall:.1f} cd/m² "
          f"(frames {start} to {end})", file=sys.stderr)
    print(f"{round(ll.max_cll)},{round(ll.max_fall)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
