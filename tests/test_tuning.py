"""vsvitm.Tuning: ITM's expert knobs, given as a Tuning or a dict of its fields, checked with a clear error."""
import pytest
import vapoursynth as vs

import vsvitm
from vsvitm.tuning import Tuning, as_tuning
from vsvitm.vsnp import clip_from_array

from conftest import moving_clip


def test_as_tuning_takes_a_tuning_a_dict_or_none():
    assert as_tuning(None) == Tuning()
    t = Tuning(ref_gate=0.01, ref_keep=1)
    assert as_tuning(t) is t
    assert as_tuning({"ref_gate": 0.01, "ref_keep": 1}) == t
    with pytest.raises(ValueError, match="no 'ref_gat'.*ref_gate"):
        as_tuning({"ref_gat": 0.01})
    with pytest.raises(ValueError, match="vsvitm.Tuning or a dict"):
        as_tuning(0.01)


@pytest.mark.parametrize("bad,match", [({"ref_gate": 1.0}, "ref_gate"), ({"ref_keep": -1}, "ref_keep"),
                                       ({"key_fill": 1}, "key_fill"), ({"exposure_norm": "yes"}, "exposure_norm"),
                                       ({"preflow": "slow"}, "preflow"), ({"cache_mb": 8}, "cache_mb")])
def test_bad_knobs_are_refused_at_itm_time(bad, match):
    """Refused before any model loads (the models folder does not exist)."""
    clip = clip_from_array(moving_clip(4))
    with pytest.raises(ValueError, match=match):
        vsvitm.ITM(clip, tuning=bad, models="/nonexistent")
    assert vsvitm.ITM(clip, mode="linear", tuning=Tuning()).format.id == vs.RGBS
