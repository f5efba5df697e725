"""vsvitm.cache.ByteLRU: an LRU bounded in bytes, shared by VapourSynth's threads."""
import threading

import numpy as np
import pytest

from vsvitm.cache import ByteLRU, nbytes


def test_nbytes_counts_arrays_in_containers():
    a = np.zeros((4, 4), np.float32)
    assert nbytes(a) == 64
    assert nbytes((a, [a, a])) == 192
    assert nbytes({"x": a, "y": (a,)}) == 128
    assert nbytes(1.5) == 64  # anything else counts as a small object


def test_least_recently_used_goes_first_within_the_byte_bound():
    c = ByteLRU(300)
    for k in "abc":
        c.put(k, np.zeros(100, np.uint8))
    assert len(c) == 3 and c.size_bytes == 300
    assert c.get("a") is not None            # "a" is now the most recent
    c.put("d", np.zeros(100, np.uint8))      # evicts "b", the least recent
    assert c.get("b") is None and c.get("a") is not None and c.get("d") is not None
    assert c.size_bytes == 300 and len(c) == 3
    assert c.hits == 3 and c.misses == 1


def test_replacing_a_key_and_values_larger_than_the_bound():
    c = ByteLRU(100)
    c.put("a", np.zeros(60, np.uint8))
    c.put("a", np.zeros(80, np.uint8))       # replaced: counted once
    assert c.size_bytes == 80 and len(c) == 1
    c.put("a", np.zeros(101, np.uint8))      # too large to keep: the old value goes too
    assert c.get("a") is None and c.size_bytes == 0
    assert ByteLRU(0).put("x", np.zeros(1)) is None
    with pytest.raises(ValueError, match="cache size"):
        ByteLRU(-1)


def test_threads_keep_the_bound():
    c = ByteLRU(10_000)

    def work(t):
        for i in range(500):
            c.put((t, i % 37), np.zeros(100 + i % 50, np.uint8))
            c.get((t, (i * 7) % 37))
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert 0 < c.size_bytes <= 10_000
    assert c.size_bytes == sum(nbytes(c.get(k)) for k in list(c._d))
