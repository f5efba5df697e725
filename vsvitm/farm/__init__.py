"""vsvitm-farm: render a VapourSynth script in segments on a Ray cluster, then join the segments.

    vsvitm-farm SCRIPT.vpy -o OUT.mkv [--segment 1920] [--address auto|HOST:PORT] [--workers N]
                [--x265 "extra x265 args"] [--raw] [--resume] [--work-dir DIR] [--dry-run]

A frame of ``vsvitm.ITM`` depends only on its number, the clip and the scene cuts near it, so
segments rendered anywhere join exactly. The farm splits [0, N) into segments aligned to the FCPM
chunk grid (``vsvitm.itm.chunk_and_margin``); each segment is one Ray task that runs
``vspipe -c y4m --start/--end`` into x265 with the HDR10 flags of ``vsvitm.hdr``, or, with
``--raw``, keeps the y4m bytes. A segment file is written under a temporary name and renamed; the
manifest in the work directory holds its frame range and SHA-256, and ``--resume`` skips the
segments it lists whose file still has that hash. Ray retries a failed task; a segment that fails
MAX_ATTEMPTS times stops the run with its range and the last lines of its stderr.

Joins: a ``.hevc`` output is the x265 CLI's elementary streams (``hdr10_x265_args``) concatenated
(each segment starts with an IDR and its parameter sets). A container output (.mkv, .mp4, .mov)
takes segments that ffmpeg's libx265 encodes with ``hdr10_ffmpeg_args`` into NUT files, joined by
ffmpeg's concat demuxer without re-encoding: ffmpeg 5's raw HEVC demuxer gives no presentation
times, so an elementary stream with B-frames cannot be muxed with correct ones. The colour
description is in the container and the stream; the mastering display and content light level in
the stream's SEI. ``--raw`` concatenates the y4m frames under one header.

Without ``--address`` a local Ray instance starts; with it, the farm joins a cluster made with
``ray start --head`` / ``ray start --address=HEAD:PORT``. The script, its source media and the work
directory must be at the same path on every node (a shared mount): the farm checks that on each
node before it renders.

Fault injection, for the tests only: ``VSVITM_FARM_FAULT="SEG[:MODE]"`` makes segment SEG fail.
MODE ``once`` (default): its first attempt leaves half a temporary file and raises; ``always``:
every attempt does; ``kill``: its first attempt kills the Ray worker process (a worker lost
mid-segment). Attempts are counted with marker files in the work directory.

Parts: common (constants, errors), probe (vspipe --info, source media, node checks), plan (segments
and their extra work), segment (one segment's render, a Ray task), join (y4m, x265 streams,
ffmpeg concat), cli (the command line and the Ray run).
"""
from .cli import build_parser, main, run
from .common import (DEFAULT_SEGMENT, FAULT_ENV, MANIFEST, MAX_ATTEMPTS, PROG, SEGMENT_EXT, STDERR_LINES, STREAM_EXT,
                     ClipInfo, FarmError, SegmentError, sha256_file, vspipe_exe)
from .join import join_container, join_hevc, join_raw, x265_to_ffmpeg, y4m_layout
from .plan import (ICAM_SHARE, KEY_MAP_SHARE, MERGE_SHARE, PLAN_MODES, STEP_SHARE, overhead_of_plan, plan_segments,
                   planned_overhead, schedule_for, segment_extra)
from .probe import check_node, probe, source_paths
from .segment import render_segment

__all__ = ["build_parser", "main", "run", "DEFAULT_SEGMENT", "FAULT_ENV", "MANIFEST", "MAX_ATTEMPTS", "PROG",
           "SEGMENT_EXT", "STDERR_LINES", "STREAM_EXT", "ClipInfo", "FarmError", "SegmentError", "sha256_file",
           "vspipe_exe", "join_container", "join_hevc", "join_raw", "x265_to_ffmpeg", "y4m_layout", "ICAM_SHARE",
           "KEY_MAP_SHARE", "MERGE_SHARE", "PLAN_MODES", "STEP_SHARE", "overhead_of_plan", "plan_segments",
           "planned_overhead", "schedule_for", "segment_extra", "check_node", "probe", "source_paths",
           "render_segment"]
