"""Run under AddressSanitizer + UBSan by test_cpu_runtime: every cpu lowering's representative
graphs (tests/cpu_cases.py), compiled with AITRACE_SANITIZE=1, checked against the reference."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import aitrace as ait  # noqa: E402
from cpu_cases import cases, compare  # noqa: E402

for dtype in (ait.float32,):
    for name, fn, args, tol in cases(dtype):
        compare(fn, args, tol)
        print(name, dtype, "ok", flush=True)
print("all ok")
