"""edgert inspect PLAN: header, bindings and a per-layer table (or JSON)."""

from __future__ import annotations

import json

from edgert.tools.memory import profile_lines, report as memory_report, summary_line

HELP = "show a plan's header, bindings and layers"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def describe(document: dict) -> dict:
    """The plan as a JSON-ready dict: header, bindings and one entry per layer."""
    tensors = document["tensors"]

    def tensor(index: int):
        if index < 0:
            return None
        entry = tensors[index]
        shown = {"name": entry["name"], "dtype": entry["dtype"], "shape": list(entry["shape"])}
        if entry.get("range"):   # plans with optimization profiles: smallest and largest dims
            shown["range"] = entry["range"]
        if "scale" in entry:     # int8 codes (edgert.int8_codes)
            shown["scale"] = entry["scale"]
        return shown

    memory = document.get("memory") or {}
    elided, overwrite = set(memory.get("elided", [])), set(memory.get("overwrite", []))
    layers = [{
        "name": layer["name"], "kind": layer["kind"], "device": layer.get("device", "cpu"),
        # elided: the memory plan made it a view or its producers write into its output: it never runs
        "runs": index not in elided, "writes_over_input": index in overwrite,
        "precision": layer.get("precision"), "tactic": layer.get("tactic"),
        "inputs": [tensor(i) for i in layer["inputs"]], "outputs": [tensor(i) for i in layer["outputs"]],
        "origin": layer.get("origin", []), "attrs": layer.get("attrs", {}),
        # auxiliary streams: the CUDA stream that runs the layer (0 = the context's) and the layers it waits for
        "stream": layer.get("stream", 0), "wait": layer.get("wait", []),
    } for index, layer in enumerate(document["layers"])]
    header = document["header"]
    bindings = document["bindings"]
    return {
        "format_version": header.get("format_version"), "edgert_version": header.get("edgert_version"),
        "target": header.get("target"), "options": header.get("options", {}),
        "constants_bytes": len(document.get("blob", b"")),
        "inputs": [tensor(b["tensor"]) | {"name": b["name"]} for b in bindings["inputs"]],
        "outputs": [tensor(b["tensor"]) | {"name": b["name"]} for b in bindings["outputs"]],
        "profiles": document.get("profiles") or [],
        "memory": {k: v for k, v in memory_report(document).items() if k != "tensors"},
        "partition": header.get("partition"),
        "tactics": header.get("tactics", {}),   # per GPU arch: layers per tactic source
        "layers": layers,
    }


def _shape(tensor: dict) -> str:
    """``1x3x224x224``; with a range, ``1-8x3x48x64-960`` (each varying dim as min-max)."""
    if tensor.get("range"):
        from edgert.runtime.shapes import format_range
        return format_range(*tensor["range"])
    return "x".join(map(str, tensor["shape"])) or "scalar"


def _shapes(tensors) -> str:
    """'name 1x3x224x224' per tensor (constants included: weights are tensors too; ranges as min-max)."""
    return ", ".join(f"{t['name']} {_shape(t)}" + (" int8" if "scale" in t else "") for t in tensors if t is not None)


def _cost(layer: dict) -> str:
    if not layer["runs"]:
        return "free (elided: view / written in place)"
    if layer["writes_over_input"]:
        return "writes over its input"
    estimate = (layer.get("attrs") or {}).get("cost_ms")   # Reformat layers: the builder's estimate
    return f"~{estimate * 1e3:.2f} us (estimate)" if estimate is not None else ""


def print_tables(info: dict) -> None:
    print(f"plan format {info['format_version']}, built by edgert {info['edgert_version']} "
          f"for target {info['target']}; constants {info['constants_bytes'] / 1024:.1f} KiB")
    print(summary_line(info["memory"]))
    for arch, sources in info["tactics"].items():
        print(f"tactics for {arch}: " + ", ".join(f"{count} {source}" for source, count in sources.items()))
    for line in profile_lines(info["memory"]):
        print(line)
    for direction in ("inputs", "outputs"):
        for binding in info[direction]:
            scale = f" (int8 codes, scale {binding['scale']:.6g})" if "scale" in binding else ""
            print(f"  {direction[:-1]:6} {binding['name']}: {binding['dtype']} {_shape(binding)}{scale}")
    streams = any(layer["stream"] or layer["wait"] for layer in info["layers"])
    if streams:
        print(f"auxiliary streams: {max(layer['stream'] for layer in info['layers'])} (stream 0 is the context's; "
              "'waits' lists the layers a layer waits for on other streams)")
    rows = [("#", "name", "kind", "device", "precision", "tactic", "inputs", "outputs", "cost", "fused from")]
    for index, layer in enumerate(info["layers"]):
        fused = " + ".join(layer["origin"]) if layer["origin"] != [layer["name"]] else ""
        rows.append((str(index), layer["name"], layer["kind"], layer["device"], str(layer["precision"]),
                     str(layer["tactic"] or "-"), _shapes(layer["inputs"]), _shapes(layer["outputs"]), _cost(layer),
                     fused))
    caps = [48] * len(rows[0])
    caps[5] = 64   # a tactic with its source: "implicit-gemm-tap mma 128x128 splitk16 [timing-cache]"
    caps[6] = caps[7] = 72
    if streams:   # two columns after the device: stream, waits
        rows = [row[:4] + (("stream", "waits") if index == 0 else
                           (str(info["layers"][index - 1]["stream"]),
                            ",".join(map(str, info["layers"][index - 1]["wait"])) or "-")) + row[4:]
                for index, row in enumerate(rows)]
        caps = caps[:4] + [6, 24] + caps[4:]
    widths = [min(max(len(row[i]) for row in rows), cap) for i, cap in enumerate(caps)]
    free = sum(not layer["runs"] for layer in info["layers"])
    print(f"{len(info['layers'])} layers ({free} free: views and concats the memory plan elides):")
    for row in rows:
        cells = [cell[:width].ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]  # origin in full
        print("  " + "  ".join(cells).rstrip())


def _print_partition(partition: dict) -> None:
    from edgert.partitioner.report import PartitionReport
    print(PartitionReport.from_dict(partition).format())


def main(args) -> int:
    from edgert.plan import load_plan_bytes, read_plan

    info = describe(read_plan(load_plan_bytes(args.plan)))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_tables(info)
        if info["partition"]:
            _print_partition(info["partition"])
    return 0
