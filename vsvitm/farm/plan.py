"""The plan: segments aligned to the FCPM chunk grid, and the extra work each segment does alone."""
from __future__ import annotations

from .common import FarmError

PLAN_MODES = ("temporal", "full", "icam", "linear")   # ITM's modes; the first is its default
# mode "full": shares of one output frame's work in a whole render (512x512 on the CPU, per output
# frame: ICAM reference steps 878 ms, merge 346 ms of about 1.9 s). A key frame's ICAM is
# key_stride frames' ICAM share.
ICAM_SHARE = 0.46
MERGE_SHARE = 0.18
STEP_SHARE = 0.36 / 1.25    # one recurrence step (both directions and the fuse) at 1.25 steps per frame
# mode "temporal": one key frame's radiance map (its single-frame ICAM, ICAM with its references,
# the pre-flows to them) in output frames of a whole render, an upper value: at 512x512 on a 2-core
# CPU, a segment alone costs 1.5-7.7 frames' time beyond its frames and the script's start, for the
# two key maps beyond its edges (vsvitm-farm-benchmark; BENCHMARKS.md, "Render farm")
KEY_MAP_SHARE = 4.0


def plan_segments(num_frames: int, segment: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) of each segment: ``segment`` rounded up to a multiple of the FCPM chunk, so
    every recurrence chunk lies inside one segment; the last segment takes what is left.

    num_frames: frames in the clip.
    segment: the wanted segment length in frames.
    chunk: the FCPM chunk (``vsvitm.itm.chunk_and_margin``).
    """
    if segment < 1 or chunk < 1:
        raise FarmError(f"--segment must be at least 1 frame, got {segment}")
    length = -(-segment // chunk) * chunk
    return [(s, min(s + length, num_frames)) for s in range(0, num_frames, length)]


def schedule_for(num_frames: int, width: int, height: int, mode: str = "temporal"):
    """The ``vsvitm.schedule.Schedule`` that ``vsvitm.ITM`` uses by default at this size in this mode.

    num_frames: frames in the clip.
    width: the clip's frame width.
    height: the clip's frame height.
    mode: the ITM mode (its default key spacing and references).
    """
    from ..itm import KEY_STRIDE, NUM_REFS, chunk_and_margin
    from ..schedule import Schedule
    chunk, margin = chunk_and_margin(width, height)
    return Schedule(num_frames, key_stride=KEY_STRIDE.get(mode, 6), num_refs=NUM_REFS.get(mode, 4),
                    chunk=chunk, margin=margin)


def segment_extra(sched, start: int, end: int, mode: str = PLAN_MODES[0]) -> dict:
    """What rendering [start, end) alone computes beyond its own frames, with no scene cuts: merged
    frames outside it (mode full: the FCPM margins of its edge chunks), key frames outside it (full:
    ICAM with references; temporal: radiance maps, the nearest key before and after), recurrence
    steps of chunks it shares with a neighbour (full), and the source frames it reads outside it
    (references and the cut detector's window).

    sched: the Schedule (``schedule_for``).
    start: the segment's first frame.
    end: one past its last frame.
    mode: the ITM mode the script runs (one of PLAN_MODES).
    """
    if mode not in PLAN_MODES:
        raise FarmError(f"mode must be one of {', '.join(PLAN_MODES)}, got {mode!r}")
    n = sched.num_frames
    window = set(range(max(0, start - sched.reach - 2), start)) | set(range(end, min(n, end + sched.reach + 2)))
    if mode == "linear":
        return {"merged": 0, "keys": 0, "steps": 0, "reads": 0}
    if mode in ("icam", "temporal"):
        from ..itm import key_weights
        pad = 2 * sched.key_stride + sched.ref_stride * sched.num_refs + sched.reach
        cuts = [c for c in (start - pad, end + pad) if 0 < c < n]
        edge = [t for t in range(start, end) if t < start + sched.key_stride or t >= end - sched.key_stride]
        keys = set()
        if mode == "temporal":
            for t in edge:
                keys.update(k for k, _ in key_weights(t, sched.keys_in(*sched.shot(t, cuts))))
        keys_out = {k for k in keys if not start <= k < end}
        reads = set(window) | keys_out
        reach = sched.ref_stride * sched.num_refs
        for k in list(keys) + [t for t in range(start, end) if t < start + reach or t >= end - reach]:
            if mode == "icam" or k in keys or sched.is_key(k, cuts):
                reads.update(sched.references(k, cuts))
        return {"merged": 0, "keys": len(keys_out), "steps": 0,
                "reads": len({t for t in reads if not start <= t < end})}
    # only frames this near an edge can need anything outside the segment
    near = (sched.fcpm_keys + 1) * sched.key_stride + sched.chunk + sched.margin + 1
    refs_reach = sched.ref_stride * sched.num_refs
    # a shot around the segment that holds everything it reaches: the same answers as the whole
    # clip without cuts, without each call walking the whole clip's key grid
    pad = near + refs_reach + sched.reach + sched.key_stride
    cuts = [c for c in (start - pad, end + pad) if 0 < c < n]
    edge = [t for t in range(start, end) if t < start + near or t >= end - near]
    chunks = {sched.chunk_of(t, cuts) for t in edge}
    merged = set()
    steps_extra = 0
    for cs, ce, rs, re_ in chunks:
        merged.update(range(rs, re_))
        if cs < start or ce > end:           # a chunk cut by the segment edge runs in both segments
            steps_extra += re_ - rs
    keys = set()
    for t in merged:
        if t < start + near or t >= end - near:
            keys.update(sched.nearest_keys(t, cuts))
    keys_out = {k for k in keys if not start <= k < end}
    reads = set(range(max(0, start - sched.reach - 2), start)) | set(range(end, min(n, end + sched.reach + 2)))
    for k in keys:
        reads.update(sched.references(k, cuts))
    keys_in = [k for k in range(start, end) if start + refs_reach > k or k >= end - refs_reach]
    for k in keys_in:
        if k in sched.keys_in(*sched.shot(k, cuts)):
            reads.update(sched.references(k, cuts))
    reads_out = {t for t in reads if not start <= t < end}
    return {"merged": len([t for t in merged if not start <= t < end]), "keys": len(keys_out),
            "steps": steps_extra, "reads": len(reads_out)}


def planned_overhead(sched, start: int, end: int, mode: str = PLAN_MODES[0]) -> float:
    """The extra work of rendering [start, end) alone, as a fraction of its own frames' work in a
    whole render: extra merges, key frames and recurrence steps weighed by their shares of a frame.

    sched: the Schedule (``schedule_for``).
    start: the segment's first frame.
    end: one past its last frame.
    mode: the ITM mode the script runs (one of PLAN_MODES).
    """
    x = segment_extra(sched, start, end, mode)
    if mode == "temporal":
        work = x["keys"] * KEY_MAP_SHARE
    else:
        work = x["merged"] * MERGE_SHARE + x["keys"] * ICAM_SHARE * sched.key_stride + x["steps"] * STEP_SHARE
    return work / max(1, end - start)


def overhead_of_plan(sched, segments: list[tuple[int, int]], mode: str = PLAN_MODES[0]) -> float:
    """Planned overhead of a whole plan: the segments' extra work over all frames' work.

    sched: the Schedule.
    segments: the plan's [start, end) ranges.
    mode: the ITM mode the script runs (one of PLAN_MODES).
    """
    total = sum(planned_overhead(sched, s, e, mode) * (e - s) for s, e in segments)
    return total / max(1, sched.num_frames)
