"""Run ONNX's own node test cases through edgert (CPU) and report which pass.

Used by tests/test_onnx_conformance.py and runnable as a script for a full report:
    python tests/conformance.py [--op Conv] [--verbose] [--slowest 10]
    python tests/conformance.py --markdown [docs/conformance.md]    # regenerate the conformance page

Cases count when every op they use is claimed (registered with an importer), their opset is one the
importer accepts, and every tensor has one of ALLOWED_DTYPES. Cases that cannot pass for a real reason are listed, one per line with the reason,
in tests/conformance_known_failures.txt.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KNOWN_FAILURES_FILE = os.path.join(HERE, "conformance_known_failures.txt")
DEFAULT_MARKDOWN = os.path.join(HERE, os.pardir, "docs", "conformance.md")
TARGET_PASS_RATE = 0.97
DEFAULT_DOMAINS = ("", "ai.onnx")
ALLOWED_DTYPES = {np.dtype(n) for n in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")}


@functools.lru_cache(maxsize=1)
def all_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return tuple(collect_testcases())


def case_ops(case) -> set[str]:
    return {node.op_type for node in case.model.graph.node}


def case_opset(case) -> int | None:
    """The case model's default-domain opset, or None when it imports none."""
    versions = [o.version for o in case.model.opset_import if o.domain in DEFAULT_DOMAINS]
    return max(versions) if versions else None


def _dtypes_allowed(case) -> bool:
    for inputs, outputs in case.data_sets:
        for array in list(inputs) + list(outputs):
            if not isinstance(array, np.ndarray) or array.dtype not in ALLOWED_DTYPES:
                return False
    return True


def _uses_claimed_ops(case, claimed: set[str]) -> bool:
    nodes = case.model.graph.node
    return all(n.domain in DEFAULT_DOMAINS for n in nodes) and case_ops(case) <= claimed


def _opset_supported(case) -> bool:
    from edgert.onnx.importer import MAX_OPSET, MIN_OPSET
    opset = case_opset(case)
    return opset is not None and MIN_OPSET <= opset <= MAX_OPSET


def claimed_cases(claimed: set[str]):
    """Cases whose every op is claimed, whose opset edgert imports and whose tensors use the allowed dtypes.

    Cases written for an opset outside the importer's range are left out: edgert rejects those models
    by design with a clear error. ``out_of_range_cases`` lists them for the report.
    """
    return [c for c in all_cases() if _uses_claimed_ops(c, claimed) and _dtypes_allowed(c) and _opset_supported(c)]


def out_of_range_cases(claimed: set[str]):
    """Cases of claimed ops and allowed dtypes that are left out because of their opset."""
    return [c for c in all_cases()
            if _uses_claimed_ops(c, claimed) and _dtypes_allowed(c) and not _opset_supported(c)]


# edgert builds static plans: shape-like tensors (Reshape's shape, Slice's starts, Tile's repeats...)
# must be known at build time, but ONNX's cases feed them as graph inputs. When the importer names
# such a tensor, the harness bakes the graph inputs it is computed from (usually the tensor itself)
# into the model as initializers holding the case's test data, as a deployment with fixed shapes
# would, and builds again. Every other input stays a runtime input.
_BUILD_TIME_INPUT = re.compile(r"\(input \d+, '([^']+)'\) must be a constant known at build time")
SHAPE_ONLY_OPS = {"Shape", "Size"}  # their outputs depend on static shapes only, never on data
BAKED_INPUTS: dict[str, set[str]] = {}  # case name -> graph inputs baked into the model


def run_case(case) -> str | None:
    """None when edgert matches the case's expected outputs, else a one-line reason."""
    from edgert.errors import EdgeRTError

    model = case.model
    input_names = [i.name for i in model.graph.input]
    output_names = [o.name for o in model.graph.output]
    baked = BAKED_INPUTS.setdefault(case.name, set())
    for inputs, expected in case.data_sets:
        feeds = dict(zip(input_names, inputs))
        try:
            results = _build_and_run(model, feeds, baked)
        except EdgeRTError as e:
            return f"{type(e).__name__}: {e}"
        except Exception as e:  # an internal error is a failure too, reported with its type
            return f"internal {type(e).__name__}: {e}"
        for name, want in zip(output_names, expected):
            reason = _compare(name, results[name], want, case)
            if reason:
                return reason
    return None


def _build_and_run(model, feeds: dict, baked: set[str]) -> dict:
    """Build (baking in the inputs edgert needs at build time, adding to ``baked``), run, return outputs."""
    import edgert
    from edgert.errors import UnsupportedError

    while True:
        runtime_feeds = {k: v for k, v in feeds.items() if k not in baked}
        built = _with_initializers(model, {k: feeds[k] for k in baked}) if baked else model
        try:
            plan = edgert.build(built, shapes={k: v.shape for k, v in runtime_feeds.items()})
        except UnsupportedError as e:
            match = _BUILD_TIME_INPUT.search(str(e))
            needed = _input_ancestors(model, match.group(1)) & set(runtime_feeds) if match else set()
            if not needed:
                raise
            baked.update(needed)
            continue
        return edgert.load(plan).create_execution_context().execute(runtime_feeds)


def _all_nodes(graph):
    """Every node of ``graph`` and of its subgraphs (If branches, Loop/Scan bodies), outermost first."""
    import onnx
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_nodes(sub)


def _node_sources(node) -> list[str]:
    """The tensors a node's outputs are computed from: its inputs, and for If/Loop/Scan its subgraphs' outputs
    (whose producers, inside the subgraphs, lead on to the outer-scope tensors they read)."""
    import onnx
    sources = [n for n in node.input if n]
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        sources += [o.name for g in graphs for o in g.output]
    return sources


def _input_ancestors(model, tensor: str) -> set[str]:
    """The graph inputs whose data ``tensor`` is computed from (itself when it is one)."""
    nodes = list(_all_nodes(model.graph))
    producers = {out: node for node in nodes for out in node.output}
    graph_inputs = {i.name for i in model.graph.input}
    if tensor not in producers and tensor not in graph_inputs:
        # IR values made by ctx.add are named after their layer ("<node name or first output>_out"):
        # start from every output of that ONNX node.
        layer = re.sub(r"_out\d*$", "", tensor)
        by_layer = [n for n in nodes if layer in (n.name, n.output[0] if n.output else None)]
        return set().union(*(_input_ancestors(model, out) for n in by_layer for out in n.output if out))
    found, stack, seen = set(), [tensor], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph_inputs:
            found.add(name)
        elif name in producers and producers[name].op_type not in SHAPE_ONLY_OPS:
            stack.extend(_node_sources(producers[name]))
    return found


def _with_initializers(model, arrays: dict):
    """A copy of ``model`` where the graph inputs named in ``arrays`` are initializers with that data."""
    import onnx
    from onnx import numpy_helper
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [i for i in copy.graph.input if i.name not in arrays]
    del copy.graph.input[:]
    copy.graph.input.extend(kept)
    copy.graph.initializer.extend(numpy_helper.from_array(np.asarray(a), n) for n, a in arrays.items())
    return copy


def _compare(name: str, got: np.ndarray, want: np.ndarray, case) -> str | None:
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


def known_failures(path: str = KNOWN_FAILURES_FILE) -> dict[str, str]:
    """``{case name: reason}`` from the known-failures file (``case_name  reason``; ``#`` comments)."""
    failures = {}
    if not os.path.exists(path):
        return failures
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split(maxsplit=1)
            if fields and not fields[0].startswith("#"):
                failures[fields[0]] = fields[1].strip() if len(fields) > 1 else "no reason given"
    return failures


def run_cases(cases, progress=None) -> dict[str, tuple[str | None, float]]:
    """``{case name: (failure reason or None, seconds)}``, warnings and FP errors silenced."""
    results = {}
    for case in cases:
        start = time.perf_counter()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reason = run_case(case)
        results[case.name] = (reason, time.perf_counter() - start)
        if progress:
            progress(case, reason)
    return results


def markdown_report(cases, results, known: dict[str, str]) -> str:
    """The docs/conformance.md page: pass rate, per-op counts, failing cases with their reasons."""
    import onnx
    import edgert
    from edgert.onnx.registry import supported_ops

    failing = {name: reason for name, (reason, _) in results.items() if reason}
    passed = len(cases) - len(failing)
    rate = 100.0 * passed / max(len(cases), 1)
    lines = [
        "# ONNX conformance", "",
        "Generated by `python tests/conformance.py --markdown`; do not edit by hand.", "",
        f"ONNX's own node test cases (onnx {onnx.__version__}) run through edgert {edgert.__version__} on the CPU "
        "backend, against the outputs stored with each case (the case's own rtol/atol). A case counts when every "
        "op it uses is claimed by edgert (has an importer), its opset is one the importer accepts, and every "
        f"tensor is one of {', '.join(sorted(d.name for d in ALLOWED_DTYPES))}.", "",
        f"**{passed}/{len(cases)} cases pass ({rate:.1f}%)**; the target is {100 * TARGET_PASS_RATE:.0f}%.", "",
        *_out_of_range_note(),
        *_baked_note(cases),
        f"Claimed ops ({len(supported_ops())}): {', '.join(supported_ops())}.", "",
        "## Failing cases", "",
    ]
    if failing:
        lines += ["| case | ops | reason |", "| --- | --- | --- |"]
        by_name = {c.name: c for c in cases}
        for name in sorted(failing):
            reason = known.get(name) or f"(not yet explained) {failing[name]}"
            ops = ", ".join(sorted(case_ops(by_name[name])))
            lines.append(f"| `{name}` | {ops} | {_md_cell(reason)} |")
    else:
        lines.append("None.")
    lines += ["", "## Cases per op", "", "| op | cases | pass |", "| --- | ---: | ---: |"]
    for op, (total, ok) in sorted(_per_op(cases, failing).items()):
        lines.append(f"| {op} | {total} | {ok} |")
    return "\n".join(lines) + "\n"


def _out_of_range_note() -> list[str]:
    from edgert.onnx.importer import MAX_OPSET, MIN_OPSET
    from edgert.onnx.registry import supported_ops
    skipped = out_of_range_cases(set(supported_ops()))
    if not skipped:
        return []
    opsets = sorted({case_opset(c) or 0 for c in skipped})
    return [f"Not counted: {len(skipped)} cases of claimed ops written for opsets outside the importer's range "
            f"{MIN_OPSET}-{MAX_OPSET} (opsets {', '.join(map(str, opsets))}); edgert rejects such models with a "
            "one-line UnsupportedError naming the opset.", ""]


def _baked_note(cases) -> list[str]:
    baked = sorted(c.name for c in cases if BAKED_INPUTS.get(c.name))
    if not baked:
        return []
    return [f"{len(baked)} cases feed a tensor edgert needs at build time (a Reshape shape, Slice bounds, Tile "
            "repeats, Split sizes, reduction axes, Resize scales...) as a graph input; edgert builds static plans, "
            "so the harness bakes the graph inputs that tensor is computed from into the model as initializers "
            "holding the case's data, as a deployment with fixed shapes would. Every other input stays a runtime "
            "input.", ""]


def _per_op(cases, failing) -> dict[str, tuple[int, int]]:
    counts = collections.defaultdict(lambda: [0, 0])
    for case in cases:
        for op in case_ops(case):
            counts[op][0] += 1
            counts[op][1] += case.name not in failing
    return {op: tuple(v) for op, v in counts.items()}


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:300]


def main(argv=None) -> int:
    from edgert.onnx.registry import supported_ops

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", action="append", help="only cases using this op (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="print passing cases too")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="show progress on stderr even when it is not a terminal (a bar on a terminal)")
    parser.add_argument("--slowest", type=int, default=0, metavar="N", help="print the N slowest cases")
    parser.add_argument("--markdown", nargs="?", const=DEFAULT_MARKDOWN, metavar="PATH",
                        help=f"write the conformance page (default {os.path.relpath(DEFAULT_MARKDOWN)})")
    args = parser.parse_args(argv)
    if args.markdown and args.op:
        parser.error("--markdown reports every claimed case; leave out --op")
    cases = claimed_cases(set(supported_ops()))
    if args.op:
        cases = [c for c in cases if case_ops(c) & set(args.op)]
    known = known_failures()

    def progress(case, reason):
        if reason:
            tag = "known " if case.name in known else ""
            print(f"{tag}FAIL {case.name}: {reason}")
        elif args.verbose:
            print(f"pass {case.name}{'  (listed as a known failure: remove it)' if case.name in known else ''}")

    from edgert.progress import set_enabled, track
    set_enabled(args.progress)
    results = run_cases(track(cases, "conformance cases"), progress)
    failures = sum(1 for reason, _ in results.values() if reason)
    for name, (_, seconds) in sorted(results.items(), key=lambda kv: -kv[1][1])[:args.slowest]:
        print(f"{seconds:7.3f}s {name}")
    passed = len(cases) - failures
    print(f"{passed}/{len(cases)} passed ({100.0 * passed / max(len(cases), 1):.1f}%)")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown_report(cases, results, known))
        print(f"wrote {os.path.normpath(args.markdown)}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
