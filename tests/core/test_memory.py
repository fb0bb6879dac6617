"""A long-lived fit worker hands freed memory back, so its RSS does not grow with the wave."""

from __future__ import annotations

import ctypes
import os

import psutil
import pytest

from misterp.fitting import release_memory


def test_release_memory_returns_freed_heap_to_the_os() -> None:
    if not hasattr(ctypes.CDLL(None), "malloc_trim"):
        pytest.skip("no glibc malloc_trim here")
    process = psutil.Process()
    # ~400 MB in 40 kB blocks (below glibc's mmap threshold, so they live on the heap); keeping
    # every 50th block pins the heap, so freeing the rest alone does not shrink the RSS.
    blocks = [bytearray(os.urandom(16)) * 2500 for _ in range(10_000)]
    pinned = blocks[::50]
    del blocks
    before = process.memory_info().rss

    release_memory()

    after = process.memory_info().rss
    assert before - after > 200 * 2**20, (before >> 20, after >> 20)
    assert len(pinned) == 200
