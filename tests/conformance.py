"""Run ONNX's own node test cases through edgert (CPU) and report which pass.

Used by tests/test_onnx_conformance.py and runnable as a script for a full report:
    python tests/conformance.py [--op Conv] [--verbose]
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings

import numpy as np

ALLOWED_DTYPES = {np.dtype(n) for n in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")}


@functools.lru_cache(maxsize=1)
def all_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return tuple(collect_testcases())


def case_ops(case) -> set[str]:
    return {node.op_type for node in case.model.graph.node}


def _dtypes_allowed(case) -> bool:
    for inputs, outputs in case.data_sets:
        for array in list(inputs) + list(outputs):
            if not isinstance(array, np.ndarray) or array.dtype not in ALLOWED_DTYPES:
                return False
    return True


def claimed_cases(claimed: set[str]):
    """Cases whose every op is claimed and whose tensors use the allowed dtypes."""
    return [c for c in all_cases() if case_ops(c) <= claimed and _dtypes_allowed(c)]


def run_case(case) -> str | None:
    """None when edgert matches the case's expected outputs, else a one-line reason."""
    import edgert
    from edgert.errors import EdgeRTError

    model = case.model
    input_names = [i.name for i in model.graph.input]
    output_names = [o.name for o in model.graph.output]
    for inputs, expected in case.data_sets:
        feeds = dict(zip(input_names, inputs))
        try:
            plan = edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})
            results = edgert.load(plan).create_execution_context().execute(feeds)
        except EdgeRTError as e:
            return f"{type(e).__name__}: {e}"
        except Exception as e:  # an internal error is a failure too, reported with its type
            return f"internal {type(e).__name__}: {e}"
        for name, want in zip(output_names, expected):
            got = results[name]
            if got.shape != want.shape:
                return f"output {name!r}: shape {got.shape}, expected {want.shape}"
            if got.dtype != want.dtype:
                return f"output {name!r}: dtype {got.dtype}, expected {want.dtype}"
            if want.dtype.kind in "fc":
                ok = np.allclose(got, want, rtol=case.rtol, atol=case.atol, equal_nan=True)
            else:
                ok = np.array_equal(got, want)
            if not ok:
                diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
                return f"output {name!r}: values differ (max abs diff {np.nanmax(diff):.3g})"
    return None


def main(argv=None) -> int:
    from edgert.onnx.registry import supported_ops

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--op", action="append", help="only cases using this op (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="print passing cases too")
    args = parser.parse_args(argv)
    cases = claimed_cases(set(supported_ops()))
    if args.op:
        cases = [c for c in cases if case_ops(c) & set(args.op)]
    failures = 0
    for case in cases:
        with np.errstate(all="ignore"):
            reason = run_case(case)
        if reason:
            failures += 1
            print(f"FAIL {case.name}: {reason}")
        elif args.verbose:
            print(f"pass {case.name}")
    passed = len(cases) - failures
    print(f"{passed}/{len(cases)} passed ({100.0 * passed / max(len(cases), 1):.1f}%)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
