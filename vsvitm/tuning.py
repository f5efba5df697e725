"""ITM's expert knobs, grouped: vsvitm.ITM(clip, tuning=vsvitm.Tuning(ref_gate=0.002)) or tuning={...}."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .flow import RUNTIME_PRESET, preset_id


@dataclass(frozen=True)
class Tuning:
    """Speed, memory and ablation settings of vsvitm.ITM; the defaults are what the shipped models were
    measured with (BENCHMARKS.md).

    :param exposure_norm: bring references to the key frame's exposure before alignment and fusion.
    :param preflow: the OpenCV DIS preset of the pre-flows, "medium" (default) or "fast" (the networks'
        training preset; slightly lower quality, a little faster).
    :param ref_gate: a reference runs only when it shows, unclipped and brighter than the key's clip
        level once brought to the key's exposure, at least this fraction of the frame where the key is
        clipped; 0 runs every reference.
    :param ref_keep: with a ref_gate, the nearest ref_keep references each way always run.
    :param cache_mb: the engine's cache of pre-flows, key results and single-frame results, in MiB.
    :param chunk: mode "full": the FCPM recurrence chunk, run with `margin` extra frames each side
        (None: 24 and 3 below 1 MP, 12 and 6 from 1 MP on).
    :param margin: mode "full": extra frames each side of a chunk (None: by frame size, as chunk).
    :param fcpm_keys: mode "full": how many of the nearest key-frame results FCPM merges into a frame
        (None: the model's, 5 = the paper's).
    :param key_network: mode "temporal": key frames run ICAM with their references (raised only over
        the single-frame result, trusted where ICAM's clue path saw the references unclipped); False
        keeps only the measured fill (faster, less recovered).
    :param key_fill: mode "temporal": key frames also take the radiance their references measured
        unclipped (aligned, exposure-matched, trusted by local agreement) in the channels they clipped.
    """
    exposure_norm: bool = True
    preflow: str = RUNTIME_PRESET
    ref_gate: float = 0.0
    ref_keep: int = 0
    cache_mb: int = 1024
    chunk: int | None = None
    margin: int | None = None
    fcpm_keys: int | None = None
    key_network: bool = True
    key_fill: bool = True

    def check(self) -> None:
        """A clear ValueError for a value ITM cannot use, naming the knob and what it takes."""
        if not (isinstance(self.ref_gate, (int, float)) and 0.0 <= self.ref_gate < 1.0):
            raise ValueError(f"vsvitm.ITM: ref_gate must be a fraction of the frame in [0, 1) (0 runs every "
                             f"reference), got {self.ref_gate!r}")
        if not (isinstance(self.ref_keep, int) and 0 <= self.ref_keep):
            raise ValueError(f"vsvitm.ITM: ref_keep must be a whole number of references each way (0 or more), "
                             f"got {self.ref_keep!r}")
        for name in ("key_network", "key_fill", "exposure_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"vsvitm.ITM: {name} must be True or False, got {getattr(self, name)!r}")
        preset_id(self.preflow, "vsvitm.ITM")  # before the engine loads its sessions
        if not (isinstance(self.cache_mb, int) and self.cache_mb >= 16):
            raise ValueError(f"vsvitm.ITM: cache_mb must be a whole number of MiB, at least 16, got {self.cache_mb!r}")


def as_tuning(tuning) -> Tuning:
    """ITM's `tuning`: a Tuning, a dict of its fields (e.g. from a JSON command line), or None (defaults)."""
    if tuning is None:
        return Tuning()
    if isinstance(tuning, Tuning):
        return tuning
    if isinstance(tuning, dict):
        known = {f.name for f in fields(Tuning)}
        unknown = sorted(set(tuning) - known)
        if unknown:
            raise ValueError(f"vsvitm.ITM: tuning has no {', '.join(map(repr, unknown))}; it takes {sorted(known)}")
        return Tuning(**tuning)
    raise ValueError(f"vsvitm.ITM: tuning must be a vsvitm.Tuning or a dict of its fields, got {tuning!r}")
