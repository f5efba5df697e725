"""The scheduling plan: pure functions of (n, clip length, shot boundaries, parameters)."""
import pytest
from hypothesis import given, settings, strategies as st

from vsvitm.schedule import Schedule


def test_paper_defaults():
    s = Schedule(200)
    keys = s.keys_in(0, 200)
    assert keys[:3] == [3, 9, 15] and all(b - a == 6 for a, b in zip(keys, keys[1:]))
    assert s.references(99, []) == [84, 114, 69, 129, 54, 144, 39, 159, 24, 174, 9, 189]
    assert s.nearest_keys(10, []) == [3, 9, 15, 21, 27]
    assert s.nearest_keys(100, []) == [87, 93, 99, 105, 111]


def test_references_stop_at_shots_and_clip_ends():
    s = Schedule(100)
    assert s.references(9, []) == [24, 39, 54, 69, 84, 99]
    assert s.references(51, [40, 70]) == [66]        # shot 40..69: 36 is outside it, 66 inside
    assert s.references(45, [40, 70]) == [60]


def test_short_shot_gets_its_own_key():
    s = Schedule(100)
    assert s.keys_in(50, 53) == [51]
    assert s.nearest_keys(52, [50, 53]) == [51]
    assert s.chunk_of(52, [50, 53]) == (50, 53, 50, 53)


def test_chunks_on_fixed_grid():
    s = Schedule(100, chunk=12, margin=6)
    assert s.chunk_of(25, []) == (24, 36, 18, 42)
    assert s.chunk_of(0, []) == (0, 12, 0, 18)
    assert s.chunk_of(99, []) == (96, 100, 90, 100)


def test_bad_parameters():
    with pytest.raises(ValueError, match="key_stride"):
        Schedule(10, key_stride=0)
    with pytest.raises(ValueError, match="num_refs"):
        Schedule(10, num_refs=-1)
    with pytest.raises(IndexError):
        Schedule(10).shot(10, [])


@st.composite
def plans(draw):
    n = draw(st.integers(1, 400))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=8)))) if n > 1 else []
    s = Schedule(n, key_stride=draw(st.integers(1, 12)), ref_stride=draw(st.integers(1, 30)),
                 num_refs=draw(st.integers(0, 6)), fcpm_keys=draw(st.integers(1, 5)),
                 chunk=draw(st.integers(1, 24)), margin=draw(st.integers(0, 8)))
    t = draw(st.integers(0, n - 1))
    return s, cuts, t


@settings(max_examples=300, deadline=None)
@given(plans())
def test_plan_properties(p):
    s, cuts, t = p
    start, end = s.shot(t, cuts)
    assert start <= t < end
    keys = s.nearest_keys(t, cuts)
    assert 1 <= len(keys) <= s.fcpm_keys
    for k in keys:
        assert start <= k < end and s.is_key(k, cuts)
        assert s.shot(k, cuts) == (start, end)
        refs = s.references(k, cuts)
        assert len(refs) <= 2 * s.num_refs and len(set(refs)) == len(refs)
        for r in refs:
            assert start <= r < end and abs(r - k) % s.ref_stride == 0
            assert abs(r - k) <= s.reach
    cs, ce, rs, re = s.chunk_of(t, cuts)
    assert start <= rs <= cs <= t < ce <= re <= end
    # everything any stage looks at stays within `reach` of the frame: the cut window suffices
    assert all(abs(k - t) <= s.reach for k in keys) and t - rs <= s.reach and re - t <= s.reach


@settings(max_examples=100, deadline=None)
@given(plans())
def test_plan_depends_only_on_cuts_near_n(p):
    """Cuts far outside the frame's reach do not change its plan (what makes the cut window enough)."""
    s, cuts, t = p
    near = [c for c in cuts if abs(c - t) <= s.reach]
    assert s.nearest_keys(t, cuts) == s.nearest_keys(t, near)
    assert s.chunk_of(t, cuts) == s.chunk_of(t, near)
    for k in s.nearest_keys(t, cuts):
        near_k = [c for c in cuts if abs(c - k) <= s.reach]
        assert s.references(k, cuts) == s.references(k, near_k)
