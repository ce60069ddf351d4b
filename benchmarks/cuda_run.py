"""Run one ``lmmrec`` command in this process and report its wall time and peak GPU memory.

    python benchmarks/cuda_run.py train -d amazon-book -m lightgcn --device cuda --epochs 3

``nvidia-smi`` sees the whole process (the CUDA context, the caching allocator's reserve);
this reads ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` after the command, the
memory its tensors needed. The last line printed is one JSON object: ``exit_code``,
``seconds`` and, where CUDA is available, ``gpu_peak_allocated_mib`` and
``gpu_peak_reserved_mib``. Used by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from lmmrec_cli.cli import app


def main(args: list[str]) -> int:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        # Without standalone mode click returns a command's exit status instead of exiting.
        returned = app(args, prog_name="lmmrec", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    if cuda:
        torch.cuda.synchronize()
    report: dict[str, object] = {"exit_code": code, "seconds": round(time.perf_counter() - started, 2)}
    if cuda:
        report["gpu_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        report["gpu_peak_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
