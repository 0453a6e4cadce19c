"""The job's address-space limit is relative to what its process maps already.

A CUDA build of torch maps several GiB of libraries at import without touching a GPU; with
`RLIMIT_AS = memory_mb` absolute, every job on such a machine failed its first allocation with
ENOMEM ("The evaluation ran out of memory"), on a 16-core machine with torch 2.11+cu130. Here a
forked child reserves 6 GiB of address space (PROT_NONE, MAP_NORESERVE: no memory behind it, as a
library's mapping costs none until touched), sets the sandbox's limits, and allocates.
"""

from __future__ import annotations

import mmap
import os

import pytest

from optforge.sandbox import layers as L

RESERVED = 6 << 30
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)


def _in_child(memory_mb: int, alloc_mb: int) -> int:
    """Exit status of a forked child that maps RESERVED bytes, sets the limits, allocates alloc_mb MiB:
    0 allocated, 3 MemoryError/RuntimeError, 4 limits not set."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import torch

            reserve = mmap.mmap(-1, RESERVED, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, prot=0)
            if not L.set_rlimits(60, memory_mb, 1 << 20, 256, None):
                code = 4
            else:
                try:
                    t = torch.ones(alloc_mb << 18)  # float32: alloc_mb MiB, touched
                    code = 0 if float(t[-1]) == 1.0 else 1
                except (MemoryError, RuntimeError):
                    code = 3
            reserve.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_address_space_limit_adds_to_what_is_mapped():
    assert L.address_space_limit(2048, 5 << 30) == (5 << 30) + (2048 << 20)
    assert L.mapped_bytes() > 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_a_job_whose_process_maps_gigabytes_already_can_still_allocate():
    assert _in_child(memory_mb=512, alloc_mb=128) == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_the_limit_still_binds_beyond_memory_mb():
    assert _in_child(memory_mb=256, alloc_mb=1024) == 3
