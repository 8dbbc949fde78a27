"""The machine a figure was measured on: CPU, ISA features, cores, ONNX Runtime.

Recorded in the bundle manifest for every variant, printed by ``ortpipe
doctor`` and by the benchmarks, and hashed into the key under which the
load-time probe check is cached. Read from ``/proc/cpuinfo`` on Linux (sysctl
on macOS); nothing here needs more than the standard library and ONNX Runtime.

Beside the ISA flags, :func:`int8_kernel_saturates` asks ONNX Runtime itself
whether its u8×s8 integer kernel saturates on this CPU (it does on x86 CPUs
without VNNI): the one fact that decides whether an int8 file computes here
what it computed where it was validated.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

# The ISA features that change which ONNX Runtime (MLAS) kernels run.
X86_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
ARM_FEATURES = ("neon", "asimd", "asimddp", "dotprod", "i8mm", "bf16", "sve", "sve2", "fp16", "asimdhp")
_ARM_ALIASES = {"asimddp": "dotprod"}

# MatMulInteger, u8 [1, 64] × s8 [64, 1] with every weight 127: built with onnx.helper
# (tests/test_machine.py rebuilds it and compares). Fed all-255 activations the exact sum is
# 2,072,640; a kernel that adds u8×s8 pairs in 16 bits saturates at 32,767 per pair.
_U8S8_PROBE = base64.b64decode(
    "CAcSB29ydHBpcGU6lwEKGAoBYQoBYhIBeSINTWF0TXVsSW50ZWdlchIEdThzOCpLCEAIARADQgFiSkB/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/WhMKAWESDgoMCAISCAoCCAEKAghAYhMKAXkS"
    "DgoMCAYSCAoCCAEKAggBQgQKABAN")
U8S8_PROBE_EXACT = 255 * 127 * 64


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def parse_cpuinfo(text: str, arch: str) -> dict:
    """CPU model and the ISA features that matter to ONNX Runtime, from ``/proc/cpuinfo`` text."""
    fields = _cpuinfo_fields(text)
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    if arch in ("x86_64", "AMD64", "i686", "i386"):
        isa = [f for f in X86_FEATURES if f in flags]
        model = fields.get("model name", "")
        where = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    else:
        isa = sorted({_ARM_ALIASES.get(f, f) for f in ARM_FEATURES if f in flags})
        model = fields.get("model name") or fields.get("Hardware") or ""
        where = ", ".join(f"{k} {fields[k]}" for k in ("CPU implementer", "CPU part") if k in fields)
    return {"cpu": model or platform.processor() or arch, "cpu_id": where, "isa": isa}


def _macos_cpu() -> dict:
    def sysctl(name: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    isa = [name for name, key in (("neon", "hw.optional.neon"), ("dotprod", "hw.optional.arm.FEAT_DotProd"),
                                  ("i8mm", "hw.optional.arm.FEAT_I8MM"), ("bf16", "hw.optional.arm.FEAT_BF16"))
           if sysctl(key) == "1"]
    return {"cpu": sysctl("machdep.cpu.brand_string") or platform.processor(), "cpu_id": "", "isa": isa}


@functools.lru_cache(maxsize=None)
def int8_kernel_saturates() -> bool | None:
    """Whether ONNX Runtime's CPU u8×s8 MatMulInteger saturates here (x86 without VNNI: True).

    None when ONNX Runtime cannot run the probe (it then says nothing either way).
    """
    import numpy as np
    import onnxruntime as ort

    try:
        from ortpipe.runtime.inference import shared_pool_exists

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.use_per_session_threads = not shared_pool_exists()
        session = ort.InferenceSession(_U8S8_PROBE, sess_options=options, providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {"a": np.full((1, 64), 255, dtype=np.uint8)})
    except Exception:  # an ONNX Runtime without MatMulInteger on CPU: no answer
        return None
    return int(result.ravel()[0]) != U8S8_PROBE_EXACT


def cuda_device() -> str | None:
    """The first CUDA device's name and driver, from ``nvidia-smi``; None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return line or None


@functools.lru_cache(maxsize=None)
def _cpu() -> dict:
    arch = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        return parse_cpuinfo(cpuinfo.read_text(errors="replace"), arch)
    if platform.system() == "Darwin":
        return _macos_cpu()
    return {"cpu": platform.processor() or arch, "cpu_id": "", "isa": []}


def describe_machine(cuda: bool = False) -> dict:
    """This machine as a JSON-ready dict (``cuda=True`` also asks ``nvidia-smi``)."""
    import onnxruntime as ort

    machine = {**_cpu(), "arch": platform.machine(), "cores": os.cpu_count(), "system": platform.system(),
               "onnxruntime": ort.__version__, "providers": list(ort.get_available_providers()),
               "int8_u8s8_saturates": int8_kernel_saturates()}
    if cuda:
        machine["cuda_device"] = cuda_device()
    return machine


def isa_summary(machine: dict) -> str:
    """``"AMD EPYC (cpu family 25, model 17), x86_64: avx2 avx512f avx512_vnni …"`` for tables and titles."""
    where = f" ({machine['cpu_id']})" if machine.get("cpu_id") else ""
    saturates = "; ONNX Runtime's u8×s8 int8 kernel saturates here" if machine.get("int8_u8s8_saturates") else ""
    return f"{machine['cpu']}{where}, {machine['arch']}: {' '.join(machine['isa']) or 'no listed ISA features'}{saturates}"


def machine_key(machine: dict | None = None, provider: str = "cpu") -> str:
    """A short hash of what makes a variant compute differently: CPU, ISA, ONNX Runtime, provider."""
    machine = machine or describe_machine()
    key = {k: machine.get(k) for k in ("cpu", "cpu_id", "arch", "isa", "onnxruntime", "int8_u8s8_saturates")}
    key["provider"] = provider
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
