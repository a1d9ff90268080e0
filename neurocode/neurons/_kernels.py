"""The fused LIF kernel (``csrc/lif.cpp``) as torch operators, built on first use.

:func:`neurocode.neurons.functional.lif_sequence` calls ``torch.ops.neurocode.lif_forward``
when it can (CPU tensors, float32/float64, a built-in spike-gradient family) and its
pure-torch loop otherwise; both draw Gaussian noise from the same counter-based stream
(:mod:`neurocode.neurons.counter_rng`), so the choice never changes the spikes.

The operators are registered by the C++ source with ``TORCH_LIBRARY(neurocode, ...)`` and
checked there with ``TORCH_CHECK``; this module adds their fake-tensor shapes
(``torch.library.register_fake``) and the autograd formula
(``torch.library.register_autograd``: the backward is the operator
``neurocode::lif_backward``), which makes them pass ``torch.library.opcheck``.

Build: ``torch.utils.cpp_extension.load`` with the system C++ compiler (about a minute,
once per machine and instruction set; ``neurocode build-kernels`` does it ahead of a fit). A
build prints one line to stderr before it starts and one with the time it took; torch's own
output (compiler checks, the ninja log) goes to ``build.log`` in the build directory. A failed
build is remembered there (``build_failed.json``; the directory is per ISA, torch version and
source hash), so later processes do not retry it: they print one line naming the reason, the
log and how to get the fast path (``neurocode build-kernels`` retries).

On x86-64 there is one build per instruction set (:data:`ISAS`): ``avx512``
(``-march=x86-64-v4``), ``avx2`` (``-march=x86-64-v3``) and ``scalar`` (``-march=x86-64-v2``:
SSE4.2, the kernel's hand-vectorised parts in scalar code), each with glibc's vector math library (``-lmvec``, for the float64 noise and the
backward pass's exp). The best the CPU runs is used; ``NEUROCODE_ISA=avx512|avx2|scalar``
forces one (an unknown value, or one the CPU cannot run, is an error); :func:`isa` says
which. Other CPUs (aarch64, Apple silicon) get one ``generic`` build with the compiler's
defaults and no libmvec. The float32 noise stream is the same bits in every build (its
log/cos/sin are plain float arithmetic, see ``csrc/lif.cpp``). The build directory is named
by the ISA and a hash of the source (text and path), the flags and the CPU's feature flags, under
``$TORCH_EXTENSIONS_DIR`` or torch's default extension root, so machines sharing a home
directory never load each other's builds. The build directory is owner-only (a directory another user can write to is
refused), and a SHA-256 of the built library is kept beside it and checked before every
load: a truncated, altered or planted library is deleted and rebuilt, never loaded.
``NEUROCODE_NO_KERNEL=1`` disables the kernel.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from neurocode._io import sha256_file

# Spike-gradient families understood by the kernel (``_kernel_spec()`` of the built-in
# noise models and surrogates returns one of these names and up to three parameters).
FAMILIES = {"gauss": 0, "logistic": 1, "sigmoid": 2, "box": 3, "triangle": 4}

SOURCES = tuple(Path(__file__).with_name("csrc") / name for name in ("lif.cpp", "event_conv.cpp", "cpu_cache.cpp"))
CFLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd")

# x86-64 instruction sets, best first: the -march level of each build and the CPU flags
# (/proc/cpuinfo) it needs. "scalar": no AVX; the compiler vectorises plain loops with SSE4.2.
ISAS = ("avx512", "avx2", "scalar")
_X86 = {
    "avx512": (("-march=x86-64-v4", "-mtune=native"),
               ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma", "bmi1", "bmi2", "f16c",
                "movbe")),
    "avx2": (("-march=x86-64-v3", "-mtune=native"), ("avx2", "fma", "bmi1", "bmi2", "f16c", "movbe")),
    "scalar": (("-march=x86-64-v2", "-mtune=native"), ("sse4_2", "ssse3", "popcnt")),
}
ISA_VARIABLE = "NEUROCODE_ISA"
CACHING_ALLOCATOR_VARIABLE = "NEUROCODE_CACHING_ALLOCATOR"

#: Files in the build directory: torch's output of the last build, and the memo of a failed one.
BUILD_LOG = "build.log"
FAILURE_MEMO = "build_failed.json"
#: How to get the fast path after a failed build (the last words of the fallback line).
REMEDY = "install a C++ compiler (g++ or clang++; CXX names another) and run `neurocode build-kernels`"

_lock = threading.Lock()
_ops = None
_failed: str | None = None
_origin: str | None = None  # how this process got the kernel: "loaded", "built in N s", "remembered failure"

# caching-allocator scopes (CachingScope) opened before the library was loaded, and the library
# that, loaded inside them, entered one C++ scope on their behalf (None: none did)
_scope_lock = threading.Lock()
_early_scopes = 0
_early_entered = None

# per thread (the mode is a thread's): SubnormalsFlushed scopes open, whether the last exit turns it off
_flush_state = threading.local()


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    import platform
    return platform.processor() + platform.machine()


def _is_x86_64() -> bool:
    import platform
    return platform.machine().lower() in ("x86_64", "amd64")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def supported_isas() -> tuple[str, ...]:
    """The kernel builds this CPU can run, best first (``("generic",)`` off x86-64)."""
    if not _is_x86_64():
        return ("generic",)
    flags = set(_cpu_key().split(":", 1)[-1].split())
    return tuple(name for name in ISAS if set(_X86[name][1]) <= flags)


def isa() -> str:
    """The instruction set of the kernel build this process uses (or would use): ``avx512``,
    ``avx2``, ``scalar`` (x86-64 without AVX2) or ``generic`` (other CPUs).

    The best the CPU supports unless ``NEUROCODE_ISA`` names one; a value that is not one of
    :data:`ISAS`, or names a build the CPU cannot run, raises ValueError.
    """
    supported = supported_isas()
    forced = os.environ.get(ISA_VARIABLE, "").strip().lower()
    if not forced:
        if not supported:
            raise ValueError("neurocode: this x86-64 CPU lacks SSE4.2/POPCNT, which every kernel build needs")
        return supported[0]
    allowed = ISAS if _is_x86_64() else ("generic",)
    if forced not in allowed:
        raise ValueError(f"{ISA_VARIABLE}={forced!r} is not a kernel build; allowed values: {', '.join(allowed)} "
                         f"(unset: the best this CPU runs, {supported[0] if supported else 'none'})")
    if forced not in supported:
        raise ValueError(f"{ISA_VARIABLE}={forced}: this CPU ({cpu_model()}) cannot run that build; it runs "
                         f"{', '.join(supported) or 'none'}")
    return forced


def _flags(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(compiler flags, linker flags) of the build ``name``."""
    if name == "generic":
        return CFLAGS, ()
    return CFLAGS + _X86[name][0], ("-lmvec",)


def build_directory(name: str | None = None) -> Path:
    """Where this machine's build of the kernel for ISA ``name`` (default :func:`isa`) lives (the
    name hashes source, flags and CPU)."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root
    name = name or isa()
    cflags, ldflags = _flags(name)
    # the sources' paths too: ninja rebuilds (silently, ~1 min) whenever build.ninja names other
    # paths, so two checkouts or installs sharing one directory would rebuild it in turn
    key = hashlib.sha256("\0".join([*(src.read_text() for src in SOURCES), *map(str, SOURCES), *cflags, *ldflags,
                                    _cpu_key(), torch.__version__, os.environ.get("CXX", "")]).encode()
                         ).hexdigest()[:16]
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / "neurocode" / f"neurocode_lif_{name}_{key}"


def _drop_unverified(library: Path, digest: Path) -> None:
    """Delete a built library whose recorded SHA-256 is missing or does not match, so that
    the build below makes it again instead of loading a truncated or foreign file."""
    if not library.exists():
        return
    try:
        ok = digest.read_text().strip() == sha256_file(library)
    except OSError:
        ok = False
    if not ok:
        library.unlink(missing_ok=True)
        digest.unlink(missing_ok=True)


def _private_directory(directory: Path) -> None:
    """Create ``directory`` (and its parent) owner-only; refuse one another user could write to."""
    for d in (directory.parent, directory):
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise PermissionError(f"kernel build directory {d} is not owned by you or is writable by others "
                                  f"(mode {st.st_mode & 0o777:o}); refusing to load a library from it")
        if st.st_mode & 0o077:
            d.chmod(0o700)


def _short_reason(text: str) -> str:
    """The line of a compiler or ninja log that says what went wrong (at most 160 characters)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for marker in ("error:", "not found", "No such file", "cannot find", "undefined reference", "Permission denied"):
        hit = next((line for line in lines if marker in line), None)
        if hit is not None:
            return hit[:160]
    return (lines[0] if lines else "no message")[:160]


@contextlib.contextmanager
def _captured(log: io.StringIO):
    """torch's compiler banners (logging), warnings and printed output go to ``log``, not the terminal."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    handler = logging.StreamHandler(log)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved
        for w in caught:
            log.write(f"{w.category.__name__}: {w.message}\n")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def remembered_failure(which: str | None = None) -> dict | None:
    """The memo of a failed build of ISA ``which`` (default :func:`isa`) on this machine, this
    torch and these sources: ``{"isa", "torch", "reason", "log"}``, or None."""
    try:
        return json.loads((build_directory(which) / FAILURE_MEMO).read_text())
    except (OSError, ValueError):
        return None


def _build(which: str, force: bool = False):
    """Load (or compile, then load) the kernel of ISA ``which``; with no library to load, a
    remembered failure raises ``_RememberedFailure`` unless ``force``."""
    global _origin
    import torch
    from torch.utils.cpp_extension import load
    directory = build_directory(which)
    cflags, ldflags = _flags(which)
    name = directory.name
    directory.parent.parent.mkdir(parents=True, exist_ok=True)
    _private_directory(directory)
    library, digest = directory / f"{name}.so", directory / f"{name}.so.sha256"
    _drop_unverified(library, digest)
    compiling = not library.exists()
    memo = directory / FAILURE_MEMO
    if compiling and memo.exists() and not force:  # a verified library (built since) wins over the memo
        raise _RememberedFailure(memo)
    if compiling:
        print(f"neurocode: building the fused CPU kernel ({which}) once, ~1 min (later runs load it; "
              "`neurocode build-kernels` does this ahead) ...", file=sys.stderr, flush=True)
    started, log = time.perf_counter(), io.StringIO()
    try:
        with _captured(log):
            load(name=name, sources=[str(src) for src in SOURCES], extra_cflags=list(cflags),
                 extra_ldflags=list(ldflags), build_directory=str(directory), is_python_module=False, verbose=False)
    except Exception as exc:
        log.write(f"{type(exc).__name__}: {exc}\n")
        _write_private(directory / BUILD_LOG, log.getvalue())
        reason = f"{type(exc).__name__}: {_short_reason(str(exc))}"
        _write_private(memo, json.dumps({"isa": which, "torch": torch.__version__, "reason": reason,
                                         "log": str(directory / BUILD_LOG)}, indent=1))
        raise _BuildFailed(reason, directory / BUILD_LOG) from exc
    memo.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    if compiling:
        _write_private(directory / BUILD_LOG, log.getvalue())
        print(f"neurocode: kernel built in {seconds:.0f} s ({directory})", file=sys.stderr, flush=True)
    _origin = f"built in {seconds:.0f} s" if compiling else "loaded from the cache"
    # the library is now the verified one or the one ninja just (re)built: record it, so that
    # later processes verify it before loading
    current = sha256_file(library)
    if not digest.exists() or digest.read_text().strip() != current:
        _write_private(digest, current)
    _register_python_side()
    if os.environ.get(CACHING_ALLOCATOR_VARIABLE, "1") == "0":  # see neurocode/memory.py
        torch.ops.neurocode.cpu_cache_set_enabled(False)
    return torch.ops.neurocode


class _BuildFailed(RuntimeError):
    def __init__(self, reason: str, log: Path):
        super().__init__(reason)
        self.reason, self.log = reason, log


class _RememberedFailure(RuntimeError):
    def __init__(self, memo: Path):
        try:
            data = json.loads(memo.read_text())
        except (OSError, ValueError):
            data = {}
        super().__init__(data.get("reason", "unknown reason"))
        self.reason, self.log = data.get("reason", "unknown reason"), data.get("log", str(memo.parent / BUILD_LOG))


def _register_python_side() -> None:
    """Fake-tensor shapes and the autograd formula of the C++ operators."""
    import torch

    @torch.library.register_fake("neurocode::lif_forward")
    def _(x, u0, threshold, eps, seeds, tau, v_th, sigma, family, p0, p1, p2, detach_reset, return_potential,
          return_state):
        T, N = x.shape[0], x[0].numel()
        bits = (T, (N + 7) // 8) if threshold is not None or seeds is not None else (0,)
        return (x.new_empty(x.shape), x.new_empty(x.shape if return_potential else (0,)),
                x.new_empty(x.shape[1:] if return_state else (0,)), x.new_empty(bits, dtype=torch.uint8))

    @torch.library.register_fake("neurocode::lif_backward")
    def _(x, u0, eps, keep_bits, grad_spikes, grad_ubar, grad_u_last, tau, v_th, family, p0, p1, p2, detach_reset):
        return x.new_empty(x.shape)

    @torch.library.register_fake("neurocode::gauss_fill")
    def _(seeds, n, loc, sigma, dtype):
        return seeds.new_empty((seeds.shape[0], n), dtype=dtype)

    def setup_context(ctx, inputs, output):
        # what the backward pass recomputes the potentials from: the inputs, and the escape
        # decisions as bits (not the [T, ...] potentials and spikes: a quarter of a float per
        # neuron-step at most, instead of two floats)
        x, u0, threshold, eps, seeds, tau, v_th, _sigma, family, p0, p1, p2, detach_reset, _, _ = inputs
        bits = output[3] if (threshold is not None or seeds is not None) else None
        ctx.save_for_backward(x, u0, eps, bits)
        ctx.set_materialize_grads(False)  # unused outputs: None, not [T, ...] zeros
        ctx.params = (tau, v_th, family, p0, p1, p2, detach_reset)

    @caching_scope
    def backward(ctx, grad_spikes, grad_ubar, grad_u_last, _grad_bits):
        x, u0, eps, bits = ctx.saved_tensors
        if grad_ubar is not None and grad_ubar.numel() == 0:
            grad_ubar = None
        if grad_u_last is not None and grad_u_last.numel() == 0:
            grad_u_last = None
        c = torch.ops.neurocode.lif_backward(x, u0, eps, bits, grad_spikes, grad_ubar, grad_u_last, *ctx.params)
        grad_u0 = None
        if u0 is not None and ctx.needs_input_grad[1]:
            grad_u0 = (c[0] * ctx.params[0]).reshape(u0.shape)
        return (c, grad_u0) + (None,) * 13

    torch.library.register_autograd("neurocode::lif_forward", backward, setup_context=setup_context)

    @torch.library.register_fake("neurocode::event_conv2d")
    def _(x, weight, bias, padding):
        B, _, H, W = x.shape
        O, _, KH, KW = weight.shape
        return x.new_empty((B, O, H + 2 * padding - KH + 1, W + 2 * padding - KW + 1))

    @torch.library.register_fake("neurocode::event_conv2d_weight")
    def _(x, grad_output, weight_shape, padding):
        return x.new_empty(tuple(weight_shape))

    def conv_setup(ctx, inputs, output):
        x, weight, bias, padding = inputs
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None

    @caching_scope
    def conv_backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # depends on the output gradient only: dense
            grad_x = torch.nn.functional.conv_transpose2d(grad, weight, padding=p)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.neurocode.event_conv2d_weight(x, grad, list(weight.shape), p)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None

    torch.library.register_autograd("neurocode::event_conv2d", conv_backward, setup_context=conv_setup)


def get_library():
    """The kernel operators (``torch.ops.neurocode``), or None when disabled or unbuildable.

    Built once per machine and instruction set (:func:`isa`) and loaded once per process; a
    failure prints one line to stderr (reason, log file, remedy) once per process and is
    remembered on disk, so that later processes fall back without compiling again. Every call
    after a failure runs the pure-torch loop, which draws the same noise and gives the same
    spikes. A ``NEUROCODE_ISA`` that names no build this CPU runs raises ValueError (it is the
    caller's setting, not a reason to fall back silently).
    """
    global _ops, _failed, _origin, _early_entered
    if _ops is not None:
        return _ops
    if _failed is not None or os.environ.get("NEUROCODE_NO_KERNEL", "") not in ("", "0"):
        return None
    which = isa()  # a bad NEUROCODE_ISA is the caller's error, not a reason to fall back silently
    with _lock:
        if _ops is None and _failed is None:
            try:
                ops = _build(which)
                with _scope_lock:
                    _ops = ops
                    if _early_scopes and _early_entered is None:  # a fit that loads the kernel midway
                        ops.cpu_cache_enter()
                        _early_entered = ops
            except Exception as exc:  # noqa: BLE001 -- any failure means: use the torch path
                _failed, _origin = _fallback(exc, which)
                print(_failed, file=sys.stderr, flush=True)
    return _ops


def _fallback(exc: Exception, which: str) -> tuple[str, str]:
    """(the one line saying what happened and how to get the fast path, the origin word)."""
    if isinstance(exc, _RememberedFailure):
        return (f"neurocode: the fused CPU kernel ({which}) could not be built earlier on this machine "
                f"({exc.reason}; log {exc.log}), so neurons run the pure-torch loop (same spikes, slower); for the "
                f"fast path {REMEDY}", "remembered failure")
    if isinstance(exc, _BuildFailed):
        return (f"neurocode: the fused CPU kernel ({which}) could not be built ({exc.reason}; log {exc.log}), so "
                f"neurons run the pure-torch loop (same spikes, slower); for the fast path {REMEDY}", "failed")
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    return (f"neurocode: the fused CPU kernel ({which}) could not be built ({reason}), so neurons run the "
            "pure-torch loop (same spikes, slower)", "failed")


def build(force: bool = True) -> tuple[bool, str]:
    """Build (or load) the kernel of :func:`isa` now; ``force`` retries a remembered failure.

    For ``neurocode build-kernels``. Returns (success, one line saying what happened); a
    failure is remembered as in :func:`get_library`, and this process then runs the
    pure-torch loop.
    """
    global _ops, _failed, _origin
    which = isa()
    with _lock:
        if _ops is None:
            _failed = None
            try:
                _ops = _build(which, force=force)
            except Exception as exc:  # noqa: BLE001 -- reported to the caller
                _failed, _origin = _fallback(exc, which)
                return False, _failed
    return True, f"neurocode: the fused CPU kernel ({which}) is ready: {_origin} ({build_directory(which)})"


def status() -> dict:
    """What ``neurocode info`` prints about the kernel: ``isa``, ``why`` (the ISA's reason),
    ``state`` (loaded / built / disabled / failed, with its reason) and ``directory``."""
    forced = os.environ.get(ISA_VARIABLE, "").strip()
    try:
        which = isa()
    except ValueError as exc:
        return {"isa": "none", "why": str(exc), "state": "unavailable", "directory": None}
    why = (f"forced by {ISA_VARIABLE}={forced}" if forced
           else f"the best this CPU runs: {cpu_model()} runs {', '.join(supported_isas())}")
    directory = build_directory(which)
    if os.environ.get("NEUROCODE_NO_KERNEL", "") not in ("", "0"):
        state = "disabled by NEUROCODE_NO_KERNEL (pure-torch loop)"
    elif _ops is not None:
        state = f"in use ({_origin})"
    elif _failed is not None:
        state = f"not in use: {_failed.removeprefix('neurocode: ')}"
    elif (memo := remembered_failure(which)) is not None:
        state = (f"failed earlier ({memo.get('reason')}; log {memo.get('log')}); the pure-torch loop runs; "
                 f"for the fast path {REMEDY}")
    elif (directory / f"{directory.name}.so").exists():
        state = "built (cached; loaded at first use)"
    else:
        state = "not built yet (built at first use, ~1 min; `neurocode build-kernels` builds it now)"
    return {"isa": which, "why": why, "state": state, "directory": str(directory)}


class CachingScope:
    """Within the block, neurocode's caching allocator is torch's CPU allocator (``csrc/cpu_cache.cpp``).

    What a neurocode call allocates comes from the cache; on the outermost exit, the allocator
    that was installed before is torch's again. Scopes nest and may overlap across threads (one
    process-wide count). A scope opened before the kernel is loaded takes effect when a call
    inside it loads the kernel, so a fit never builds the kernel for the scope's sake. Without
    the kernel, and with ``NEUROCODE_CACHING_ALLOCATOR=0``, it does nothing.
    """

    __slots__ = ("_ops",)

    def __enter__(self):
        global _early_scopes
        with _scope_lock:
            self._ops = _ops
            if self._ops is None:
                _early_scopes += 1
            else:
                self._ops.cpu_cache_enter()
        return self

    def __exit__(self, *exc_info):
        global _early_scopes, _early_entered
        with _scope_lock:
            if self._ops is not None:
                self._ops.cpu_cache_exit()
                return
            _early_scopes -= 1
            if _early_scopes == 0 and _early_entered is not None:
                _early_entered.cpu_cache_exit()
                _early_entered = None


def _each_call_inside(scope: type):
    """A decorator that runs each call of a function inside a new ``scope()``."""
    def decorate(function):
        @functools.wraps(function)
        def scoped(*args, **kwargs):
            with scope():
                return function(*args, **kwargs)
        return scoped
    return decorate


#: ``function`` with each call inside a :class:`CachingScope`: neurocode's entry points and layers.
caching_scope = _each_call_inside(CachingScope)


def flushes_subnormals() -> bool:
    """Whether float arithmetic on the calling thread flushes subnormal results to zero (FTZ)."""
    import torch

    return bool(torch.tensor(1e-30, dtype=torch.float32) * 1e-10 == 0)


def _set_flush(on: bool) -> bool:
    """FTZ/DAZ on or off on the calling thread (``torch.set_flush_denormal``); returns whether it was on."""
    import torch

    before = flushes_subnormals()
    torch.set_flush_denormal(on)
    return before


class SubnormalsFlushed:
    """Within the block, CPU float arithmetic on the calling thread flushes subnormal numbers to zero
    (``torch.set_flush_denormal``); on the thread's outermost exit, the mode found on entry is back.

    A noise density far in its tail is a subnormal float, and CPU convolutions and matrix products run
    ~10x slower on them (a trained paper-preset NSNN step took 28 s instead of 2.3 s); flushing them
    changes no value above 1e-38. It is neurocode's mode only inside its own calls (a fit, predict,
    evaluate, simulate), so the calling thread computes subnormals as IEEE 754 says between them (a fit
    used to leave it on for the rest of the process). torch sets the calling thread only: intra-op
    threads keep the mode they were created with (those a fit creates, flushing; those created earlier,
    not), which is why the readout's windows hold no subnormal weights of their own.
    """

    __slots__ = ()

    def __enter__(self):
        depth = getattr(_flush_state, "depth", 0)
        if depth == 0:
            _flush_state.restore = not _set_flush(True)
        _flush_state.depth = depth + 1
        return self

    def __exit__(self, *exc_info):
        _flush_state.depth -= 1
        if _flush_state.depth == 0 and _flush_state.restore:
            _set_flush(False)


#: ``function`` with each call inside :class:`SubnormalsFlushed`: neurocode's entry points.
subnormals_flushed = _each_call_inside(SubnormalsFlushed)


@contextlib.contextmanager
def pure_torch(reason: str = "disabled by the caller"):
    """Within the block, every neuron runs the pure-torch loop, not the kernel.

    For comparisons of the two paths (benchmarks, tests); the kernel is back afterwards.
    """
    global _ops, _failed
    with _lock:
        saved = _ops, _failed
        _ops, _failed = None, reason
    try:
        yield
    finally:
        with _lock:
            _ops, _failed = saved


def failure() -> str | None:
    """Why the kernel could not be built (None if it was, or has not been tried)."""
    return _failed
