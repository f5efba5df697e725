"""The numeric core of the plugin, one module a job:

  models     the model folder: manifests, graph variants, sessions (load, ModelSet)
  allocator  glibc allocator tuning (arena cap, mmap threshold, heap trim)
  preflow    the pre-flow and luma caches (Preflows)
  runner     how graphs run: HostRunner (plain runs) and DeviceRunner (CUDA IO binding)
  icam       the ICAM stage (IcamStage)
  merge      one FCPM merge's inputs, on the host or on the device
  fcpm       the FCPM stage: merge and recurrence (FcpmStage)
  core       the Engine, which puts them together
"""
from ..flow import luma, warp_np, warp_planes
from ..prep import MAX_REL, Y_MAX
from .allocator import MMAP_THRESHOLD, TRIM_PIXELS, limit_malloc_arenas, mmap_large_blocks, trim_heap
from .core import BAND_HALO, BAND_PIXELS, Engine
from .fcpm import CUDA_MERGES_AT_ONCE, LOG_EPS, MERGE_ALONE_PIXELS, merges_at_once
from .merge import DEVICE_KEYS
from .models import (CPU_WARPS_MAX_PIXELS, FCPM_GRAPHS, GRAPH_INPUTS, ICAM_GRAPHS, INT8_SOURCE_KEY, MERGE_CORRECT,
                     MODEL_DIR, MODEL_FORMAT, OPTIONAL_INPUTS, PREWARP_GRAPHS, SPLIT_MERGE, SPLIT_REF, file_sha256)
from .runner import PREP_THREADS

__all__ = ["Engine", "MODEL_DIR", "MODEL_FORMAT", "Y_MAX", "MAX_REL", "luma", "warp_np", "warp_planes", "TRIM_PIXELS",
           "MMAP_THRESHOLD", "limit_malloc_arenas", "mmap_large_blocks", "trim_heap", "BAND_HALO", "BAND_PIXELS",
           "CUDA_MERGES_AT_ONCE", "LOG_EPS", "MERGE_ALONE_PIXELS", "merges_at_once", "DEVICE_KEYS",
           "CPU_WARPS_MAX_PIXELS", "FCPM_GRAPHS", "GRAPH_INPUTS", "ICAM_GRAPHS", "INT8_SOURCE_KEY", "MERGE_CORRECT",
           "OPTIONAL_INPUTS", "PREWARP_GRAPHS", "SPLIT_MERGE", "SPLIT_REF", "file_sha256", "PREP_THREADS"]
