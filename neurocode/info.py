"""What this installation is: ``neurocode info`` and ``neurocode build-kernels``.

:func:`describe` gives the lines ``neurocode info`` prints: the version, the fused CPU kernel's
build (its instruction set and why, and whether it is loaded, cached, not built yet or failed,
with the reason), the threads, torch's devices and where the data is read from. It never
compiles: a cached build is loaded (seconds), an unbuilt one is reported as such.
:func:`build_kernels` compiles now (retrying a remembered failure), for a setup step ahead of
the first fit.
"""

from __future__ import annotations

import os
import platform

__all__ = ["describe", "build_kernels"]


def describe() -> list[str]:
    """The lines of ``neurocode info`` (text, one fact each)."""
    import torch

    from neurocode import __version__
    from neurocode.fitting import CUDA_VERIFIED
    from neurocode.neurons import _kernels

    kernel = _kernels.status()
    if kernel["state"].startswith("built (cached"):
        _kernels.get_library()  # loads in seconds; says whether the cached build is usable here
        kernel = _kernels.status()
    lines = [f"neurocode {__version__} (distribution neurocode-snn; Python {platform.python_version()}, "
             f"torch {torch.__version__})",
             f"kernel: {kernel['isa']} build ({kernel['why']}): {kernel['state']}"]
    if kernel["directory"]:
        lines.append(f"kernel directory: {kernel['directory']}")
    omp = os.environ.get("OMP_NUM_THREADS")
    lines.append(f"threads: torch uses {torch.get_num_threads()} of {os.cpu_count()} CPUs "
                 f"(OMP_NUM_THREADS={omp if omp is not None else 'unset'}; `neurocode fit --threads N` sets it)")
    lines.append(f"devices: {_devices(torch, CUDA_VERIFIED)}")
    lines.append(f"data: {_data_line()}")
    return lines


def _devices(torch, verified: str | None) -> str:
    if not torch.cuda.is_available():
        why = "torch built without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        return f"cpu (fits run here); cuda: none ({why})"
    names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
    if verified:
        return f"cpu, {names} (--device auto uses the GPU; CUDA path verified {verified})"
    return (f"cpu, {names} (--device auto uses the CPU: the CUDA path has not yet been verified on a GPU; "
            "--device cuda uses it)")


def _data_line() -> str:
    from neurocode.data import bundled_path

    source = "NEUROCODE_DATA" if os.environ.get("NEUROCODE_DATA") else "bundled"
    try:
        path = bundled_path()
    except FileNotFoundError as exc:
        return f"missing ({source}): {str(exc).splitlines()[0]}"
    return f"{path.parent} (default recording file {path.name}, {source}; --data FILE reads another)"


def build_kernels() -> tuple[bool, str]:
    """Compile (or load) the fused CPU kernel of this CPU's instruction set now.

    Returns (success, one line); a remembered failure is retried, and a new one is remembered.
    ``NEUROCODE_NO_KERNEL=1`` is reported as a failure (nothing to build).
    """
    from neurocode.neurons import _kernels

    if os.environ.get("NEUROCODE_NO_KERNEL", "") not in ("", "0"):
        return False, "neurocode: NEUROCODE_NO_KERNEL is set, so the kernel is disabled; unset it to build"
    return _kernels.build(force=True)
