"""ONNX's own node test cases for every claimed op, one test per case (ids are the case names).

Cases listed in conformance_known_failures.txt are xfail(strict=True): when one starts passing the
suite fails until its line is removed, so the list never goes stale. The aggregate test holds the
project's target: at least 97% of the claimed cases pass. See tests/conformance.py for which cases
count and how they are run; docs/conformance.md is the generated report.
"""

from __future__ import annotations

import pytest

import conformance
from edgert.onnx.registry import supported_ops

CASES = conformance.claimed_cases(set(supported_ops()))
KNOWN_FAILURES = conformance.known_failures()
_results: dict[str, str | None] = {}


def _failure(case) -> str | None:
    """The case's failure reason (None when it passes); each case runs once per process."""
    if case.name not in _results:
        (reason, _), = conformance.run_cases([case]).values()
        _results[case.name] = reason
    return _results[case.name]


def _param(case):
    marks = ()
    if case.name in KNOWN_FAILURES:
        marks = pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case.name])
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_node_case(case):
    reason = _failure(case)
    assert reason is None, reason


def test_pass_rate():
    failing = {c.name: _failure(c) for c in CASES if _failure(c)}
    rate = 1.0 - len(failing) / max(len(CASES), 1)
    shown = "; ".join(f"{name}: {reason}" for name, reason in sorted(failing.items())[:20])
    assert rate >= conformance.TARGET_PASS_RATE, \
        f"{len(CASES) - len(failing)}/{len(CASES)} claimed cases pass ({100 * rate:.1f}%); failing: {shown}"


def test_known_failures_name_real_cases():
    """Every line of the known-failures file names an existing ONNX case (catches typos and renames)."""
    names = {c.name for c in conformance.all_cases()}
    unknown = sorted(set(KNOWN_FAILURES) - names)
    assert not unknown, f"conformance_known_failures.txt names cases ONNX does not have: {unknown}"


def test_known_failures_are_explained():
    unexplained = sorted(name for name, reason in KNOWN_FAILURES.items() if reason == "no reason given")
    assert not unexplained, f"give a reason for each known failure: {unexplained}"
