"""A thread-safe LRU cache bounded in bytes (numpy arrays, or tuples/lists of them)."""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


def nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 64


class ByteLRU:
    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("vsvitm: cache size must be >= 0")
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return v[0]

    def put(self, key, value):
        size = nbytes(value)
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._size -= old[1]
            if size > self.max_bytes:
                return
            self._d[key] = (value, size)
            self._size += size
            while self._size > self.max_bytes:
                _, (_, s) = self._d.popitem(last=False)
                self._size -= s

    @property
    def size_bytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._d)
