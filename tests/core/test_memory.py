"""A long-lived fit worker hands freed memory back, so its RSS does not grow with the wave."""

from __future__ import annotations

import ctypes
import os
import weakref

import psutil
import pytest

from misterp.fitting import FULL_COLLECTION_EVERY, release_memory


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


class _Node:
    """Half of a reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_release_memory_frees_the_cycles_a_fit_left_behind() -> None:
    release_memory()  # freezes what is alive now
    trace = _cycle()  # what a fit allocates and drops, like the posterior's DataTree
    assert trace() is not None

    release_memory()

    assert trace() is None


def test_a_cycle_alive_at_a_release_is_freed_by_a_full_collection_within_the_period() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    release_memory()  # a and b are alive: frozen
    del a, b
    for _ in range(FULL_COLLECTION_EVERY):
        release_memory()
        if alive() is None:
            break
    assert alive() is None
