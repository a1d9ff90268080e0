// A caching allocator for torch's large CPU tensors.
//
// A training step allocates the same [T, B, ...] maps (tens to hundreds of MB each) and frees
// them at its end. torch's CPU allocator hands blocks that large to glibc, which maps each with
// its own mmap and unmaps it when it is freed: every step faults every page in again and the
// kernel zeroes it (at the paper preset 0.16 s of system time per 0.7-s step; at one LIF layer of
// 16x90x90 more system time than compute). glibc cannot simply be told to keep them: tried
// (mallopt), its heap grew by about a block per step, as torch's aligned requests do not fit into
// the holes that freed blocks leave.
//
// This allocator keeps freed blocks of >= 1 MB, sizes rounded up to 2 MB, and hands the smallest
// kept block that fits, and is at most 1/8 larger, to the next request (as torch's CUDA caching
// allocator does on a GPU); smaller requests go to torch's own allocator. It bounds what it holds:
// on a miss, kept blocks are unmapped (largest first) until the bytes in use plus the bytes kept
// are at most 5/4 of the high-water mark of bytes in use. (With a bound of exactly the high-water
// mark, a step whose block sizes peak at different times evicts the blocks its next step needs;
// at the paper preset 1/4 of slack ends all misses after the first steps.)
// Blocks are 2-MB aligned and advised as transparent huge pages unless THP_MEM_ALLOC_ENABLE=0.
//
// It is torch's CPU allocator only inside neurocode's own calls (a library imported into a lab's
// session must not change how the rest of its torch code allocates): each of the extension's ops
// (a CacheScope in lif.cpp and event_conv.cpp) and each Python-side scope (neurocode._kernels:
// a fit, predict or evaluate, a spiking layer's forward and backward, memory.caching_allocator())
// enters a process-wide scope; the first entry installs it, the last exit restores whatever was
// installed before, at the priority it had. A counter rather than each scope saving and restoring
// the allocator it found: two threads' overlapping scopes would otherwise leave it installed.
// Blocks keep their own deleter, so a tensor of ours freed outside every scope still goes back to
// the cache.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <sys/mman.h>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace {

constexpr size_t kMinBytes = size_t(1) << 20;  // smaller requests: torch's own allocator
constexpr size_t kAlign = size_t(2) << 20;     // a huge page

struct Cache {
    std::mutex mu;
    std::multimap<size_t, void*> kept;          // size -> a free block of that size
    std::unordered_map<void*, size_t> sizes;    // every block of ours, in use or kept -> size
    size_t in_use = 0, cached = 0, high = 0;
    int64_t hits = 0, misses = 0;
    bool huge = true;
};

Cache& cache() {
    static Cache* c = new Cache;  // never destroyed: tensors may still be freed during exit
    return *c;
}

void* map_block(size_t n, bool huge) {
    // over-map by one alignment and cut the ends, so that the block starts on a huge page
    char* raw = static_cast<char*>(mmap(nullptr, n + kAlign, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (raw == MAP_FAILED) return nullptr;
    char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kAlign - 1) & ~(uintptr_t(kAlign) - 1));
    if (p > raw) munmap(raw, size_t(p - raw));
    const size_t tail = size_t(raw + n + kAlign - (p + n));
    if (tail) munmap(p + n, tail);
#if defined(MADV_HUGEPAGE)  // Linux (macOS has no transparent huge pages)
    if (huge) madvise(p, n, MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    return p;
}

// Under the lock: forget kept blocks, largest first, until in_use + cached <= limit;
// returns them for unmapping outside the lock.
std::vector<std::pair<void*, size_t>> evict(Cache& c, size_t limit) {
    std::vector<std::pair<void*, size_t>> out;
    while (!c.kept.empty() && c.in_use + c.cached > limit) {
        auto it = std::prev(c.kept.end());
        out.emplace_back(it->second, it->first);
        c.cached -= it->first;
        c.sizes.erase(it->second);
        c.kept.erase(it);
    }
    return out;
}

void unmap_all(const std::vector<std::pair<void*, size_t>>& blocks) {
    for (auto& [p, n] : blocks) munmap(p, n);
}

c10::DeleterFnPtr g_fallback_raw_deleter = nullptr;

// The deleter of our blocks, and raw_deleter(): raw_allocate/raw_deallocate users (oneDNN
// scratch buffers) free small blocks of torch's allocator through it too.
void release(void* p) {
    Cache& c = cache();
    {
        std::lock_guard<std::mutex> g(c.mu);
        auto it = c.sizes.find(p);
        if (it != c.sizes.end()) {
            c.in_use -= it->second;
            c.cached += it->second;
            c.kept.emplace(it->second, p);
            return;
        }
    }
    g_fallback_raw_deleter(p);
}

struct CachingCPUAllocator final : c10::Allocator {
    c10::Allocator* fallback = nullptr;

    c10::DataPtr allocate(size_t nbytes) override {
        if (nbytes < kMinBytes) return fallback->allocate(nbytes);
        const size_t n = (nbytes + kAlign - 1) / kAlign * kAlign;
        Cache& c = cache();
        std::vector<std::pair<void*, size_t>> drop;
        bool huge;
        {
            std::lock_guard<std::mutex> g(c.mu);
            // the smallest kept block that fits, if it is at most 1/8 larger
            auto it = c.kept.lower_bound(n);
            if (it != c.kept.end() && it->first <= n + n / 8) {
                void* p = it->second;
                c.cached -= it->first;
                c.in_use += it->first;
                c.kept.erase(it);
                ++c.hits;
                return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
            }
            ++c.misses;
            c.in_use += n;
            c.high = std::max(c.high, c.in_use);
            drop = evict(c, c.high + c.high / 4);
            huge = c.huge;
        }
        unmap_all(drop);
        void* p = map_block(n, huge);
        if (p == nullptr) {  // out of address space or memory: give back everything kept, once
            {
                std::lock_guard<std::mutex> g(c.mu);
                drop = evict(c, 0);
            }
            unmap_all(drop);
            p = map_block(n, huge);
        }
        std::lock_guard<std::mutex> g(c.mu);
        if (p == nullptr) {
            c.in_use -= n;
            TORCH_CHECK(false, "neurocode caching allocator: cannot allocate ", nbytes, " bytes of CPU memory");
        }
        c.sizes.emplace(p, n);
        return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
    }

    c10::DeleterFnPtr raw_deleter() const override { return &release; }

    void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

CachingCPUAllocator& allocator() {
    static CachingCPUAllocator* a = new CachingCPUAllocator;
    return *a;
}

// The scopes' state, under its own lock (allocations never take it).
struct Scopes {
    std::mutex mu;
    int64_t depth = 0;
    bool enabled = true;                   // whether open scopes install the allocator
    bool installed = false;                // whether it is installed by the scopes now
    c10::Allocator* previous = nullptr;    // what it replaced, restored on the last exit
    uint8_t priority = 0;                  // the priority that allocator had (kept)
};

Scopes& scopes() {
    static Scopes* s = new Scopes;
    return *s;
}

void install(Scopes& s) {
    CachingCPUAllocator& a = allocator();
    c10::Allocator* current = c10::GetCPUAllocator();
    if (current == &a) return;  // never: `previous` must not become ourselves
    a.fallback = current;
    g_fallback_raw_deleter = current->raw_deleter();
    TORCH_CHECK(g_fallback_raw_deleter != nullptr, "torch's CPU allocator has no raw deleter");
    const char* thp = std::getenv("THP_MEM_ALLOC_ENABLE");
    {
        std::lock_guard<std::mutex> g(cache().mu);
        cache().huge = !(thp && std::strcmp(thp, "0") == 0);
    }
    // c10 installs an allocator over one of lower or equal priority and keeps the higher one:
    // the lowest priority that takes is the current one, so restoring at it leaves c10 as it was
    // (a raised priority would lock out every allocator installed later at the default one).
    for (int p = 0; p <= 255; ++p) {
        c10::SetCPUAllocator(&a, uint8_t(p));
        if (c10::GetCPUAllocator() == &a) {
            s.previous = current;
            s.priority = uint8_t(p);
            s.installed = true;
            return;
        }
    }
}

void uninstall(Scopes& s) {
    if (c10::GetCPUAllocator() == &allocator()) c10::SetCPUAllocator(s.previous, s.priority);
    s.installed = false;  // replaced by someone else meanwhile: theirs stays
}

void sync(Scopes& s) {
    const bool want = s.depth > 0 && s.enabled;
    if (want && !s.installed) install(s);
    else if (!want && s.installed) uninstall(s);
}

void op_enter() {
    Scopes& s = scopes();
    std::lock_guard<std::mutex> g(s.mu);
    ++s.depth;
    try {
        sync(s);
    } catch (...) {  // a failed entry is no open scope: nobody will exit it
        --s.depth;
        throw;
    }
}

void op_exit() {
    Scopes& s = scopes();
    std::lock_guard<std::mutex> g(s.mu);
    TORCH_CHECK(s.depth > 0, "neurocode caching allocator: a scope was exited that was never entered");
    --s.depth;
    sync(s);
}

// Whether scopes install the allocator (applied at once to the open ones); returns the previous setting.
bool op_set_enabled(bool enabled) {
    Scopes& s = scopes();
    std::lock_guard<std::mutex> g(s.mu);
    const bool was = s.enabled;
    s.enabled = enabled;
    sync(s);
    return was;
}

// torch's current CPU allocator, as an address: what tests compare before and after a call.
int64_t op_current_allocator() { return int64_t(reinterpret_cast<uintptr_t>(c10::GetCPUAllocator())); }

int64_t op_empty_cache() {
    Cache& c = cache();
    std::vector<std::pair<void*, size_t>> drop;
    size_t freed;
    {
        std::lock_guard<std::mutex> g(c.mu);
        freed = c.cached;
        drop = evict(c, 0);
        c.high = c.in_use;
    }
    unmap_all(drop);
    return int64_t(freed);
}

std::vector<int64_t> op_cache_info() {
    Cache& c = cache();
    std::lock_guard<std::mutex> g(c.mu);
    return {int64_t(c.in_use), int64_t(c.cached), int64_t(c.high), c.hits, c.misses,
            int64_t(c10::GetCPUAllocator() == &allocator())};
}

}  // namespace

namespace neurocode {
void cpu_cache_enter() { op_enter(); }
void cpu_cache_exit() { op_exit(); }
}  // namespace neurocode

TORCH_LIBRARY_FRAGMENT(neurocode, m) {
    m.def("cpu_cache_enter() -> ()", &op_enter);
    m.def("cpu_cache_exit() -> ()", &op_exit);
    m.def("cpu_cache_set_enabled(bool enabled) -> bool", &op_set_enabled);
    m.def("cpu_allocator() -> int", &op_current_allocator);
    m.def("cpu_cache_empty() -> int", &op_empty_cache);
    m.def("cpu_cache_info() -> int[]", &op_cache_info);
}
