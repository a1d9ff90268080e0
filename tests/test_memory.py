"""neurocode's caching CPU allocator (neurons/csrc/cpu_cache.cpp, neurocode.memory)."""

import os
import resource
import subprocess
import sys

import pytest
import torch

from neurocode import memory
from neurocode.neurons import _kernels

pytestmark = pytest.mark.skipif(_kernels.get_library() is None, reason=f"no kernel: {_kernels.failure()}")

MB = 1 << 20


@pytest.fixture
def cache():
    """The allocator installed and emptied; emptied again afterwards."""
    was = memory.caching_allocator(True)
    memory.empty_cache()
    yield
    memory.empty_cache()
    memory.caching_allocator(was)


def test_the_allocator_is_installed_with_the_kernel():
    assert memory.cache_info().enabled


def test_a_freed_block_is_handed_to_the_next_request_without_page_faults(cache):
    a = torch.ones(32 * MB)  # 128 MB, written: every page faulted in once
    ptr = a.data_ptr()
    del a
    info = memory.cache_info()
    assert info.kept == 128 * MB and info.in_use == 0
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = torch.ones(32 * MB)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    assert b.data_ptr() == ptr
    assert faults < 100  # 32,768 4-KB pages (or 64 huge pages) if the memory were new
    after = memory.cache_info()
    assert (after.hits, after.misses) == (info.hits + 1, info.misses)
    assert torch.equal(b, torch.ones(32 * MB))


def test_a_kept_block_serves_requests_up_to_an_eighth_smaller_only(cache):
    a = torch.empty(64 * MB, dtype=torch.uint8)
    ptr = a.data_ptr()
    del a
    misses = memory.cache_info().misses
    b = torch.empty(57 * MB, dtype=torch.uint8)  # 64 <= 57 + 57/8: the kept block fits
    assert b.data_ptr() == ptr
    del b
    c = torch.empty(40 * MB, dtype=torch.uint8)  # 64 MB would waste more than 1/8
    assert c.data_ptr() != ptr
    assert memory.cache_info().misses == misses + 1


def test_what_it_holds_stays_within_five_quarters_of_the_high_water_mark(cache):
    g = torch.Generator().manual_seed(0)
    base = memory.cache_info().in_use  # blocks other objects of this process hold
    live = []
    for _ in range(200):
        if live and torch.rand((), generator=g) < 0.5:
            live.pop(int(torch.randint(len(live), (), generator=g)))
        else:
            live.append(torch.empty(int(torch.randint(1, 40, (), generator=g)) * MB, dtype=torch.uint8))
        info = memory.cache_info()
        asked = sum(-(-t.numel() // (2 * MB)) * 2 * MB for t in live)  # rounded up to 2 MB
        assert asked <= info.in_use - base <= asked * 9 // 8  # a kept block may be 1/8 larger
        assert info.in_use + info.kept <= info.high_water * 5 // 4 + 40 * MB  # + the request that raised it
    del live
    assert memory.empty_cache() > 0
    assert memory.cache_info().kept == 0


def test_small_tensors_and_blocks_from_before_survive_removal(cache):
    base = memory.cache_info().in_use
    big = torch.ones(4 * MB)
    small = torch.ones(1000)
    assert memory.caching_allocator(False)
    assert not memory.cache_info().enabled
    del big, small  # freed through the deleters they were made with
    info = memory.cache_info()
    assert info.in_use == base
    x = torch.ones(4 * MB)  # torch's own allocator now
    assert memory.cache_info() == info and x.sum() == 4 * MB


def test_convolutions_with_scratch_buffers_run_under_it(cache):
    """oneDNN frees scratch blocks of torch's allocator through the installed allocator's raw deleter."""
    conv = torch.nn.Conv2d(16, 32, 11, padding=5)
    x = torch.rand(64, 16, 40, 40, requires_grad=True)
    for _ in range(2):
        conv(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_it_can_be_opted_out_of():
    code = ("import torch; from neurocode.neurons import LIF; from neurocode import memory; "
            "LIF()(torch.rand(2, 1, 4)); print(memory.cache_info().enabled)")
    env = dict(os.environ, NEUROCODE_CACHING_ALLOCATOR="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
