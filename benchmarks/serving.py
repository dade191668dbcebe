"""Serving load test: edgert plans behind a real Triton server, dynamic batching on and off.

For each model (the ResNet-style test model with a dynamic batch, and an OCR-style text recognizer with a
dynamic batch and width) the script builds a plan with an optimization profile, writes a Triton repository
with `edgert.triton.write_repository` twice (dynamic batching on / off), starts the local tritonserver of
nvidia-pytriton for each, and runs a bounded closed-loop load: C concurrent HTTP clients x R requests each,
every answer checked against a direct `context.execute` of the same input (first request of each client) and
for errors. Prints throughput, p50/p99 latency, errors and the server's batched executions per model.

    python benchmarks/serving.py [--clients 8] [--requests 500] [--models resnet,recognizer] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import edgert  # noqa: E402
from edgert.triton import write_repository  # noqa: E402
from edgert.triton_server import LocalTritonServer  # noqa: E402


def resnet_case():
    from dynamic_models import dynamic_export
    from models import MODELS
    model = dynamic_export(MODELS["resnet"].build(), {"input": (0,)})
    profile = {"input": ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))}
    return model, profile, lambda rng: {"input": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)}


def recognizer_case():
    from dynamic_models import build_text_recognizer
    model = build_text_recognizer()
    profile = {"image": ((1, 3, 48, 64), (4, 3, 48, 320), (8, 3, 48, 960))}
    widths = (64, 100, 320)
    return model, profile, lambda rng: {
        "image": rng.standard_normal((1, 3, 48, widths[rng.integers(len(widths))])).astype(np.float32)}


CASES = {"resnet": resnet_case, "recognizer": recognizer_case}


def _client_loop(url, model_name, make_feeds, requests, seed, latencies, errors, reference):
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(url)
    rng = np.random.default_rng(seed)
    for index in range(requests):
        feeds = make_feeds(rng)
        inputs = []
        for name, array in feeds.items():
            tensor = httpclient.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        started = time.perf_counter()
        try:
            result = client.infer(model_name, inputs)
        except Exception as e:   # counted, never hidden
            errors.append(str(e))
            continue
        latencies.append(time.perf_counter() - started)
        if index == 0:
            for name, expected in reference(feeds).items():
                if not np.allclose(result.as_numpy(name), expected, rtol=1e-5, atol=1e-6):
                    errors.append(f"{name}: answer differs from direct execution")


def _batched_executions(server, model_name) -> tuple[int, int]:
    """(inference count, execution count) from the server's statistics."""
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model_name}/stats") as answer:
        stats = json.load(answer)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def run_case(name, clients, requests, workdir):
    model, profile, make_feeds = CASES[name]()
    plan_path = os.path.join(workdir, f"{name}.plan")
    edgert.build(model, profiles=[profile]).save(plan_path)
    engine = edgert.load(plan_path)
    context_lock = threading.Lock()
    context = engine.create_execution_context()

    def reference(feeds):
        with context_lock:
            return context.execute(feeds)

    rows = []
    for batching in (False, True):
        repo = os.path.join(workdir, f"repo-{name}-{'on' if batching else 'off'}")
        options = dict(dynamic_batching=True, max_queue_delay_us=2000) if batching else {}
        write_repository([plan_path], repo, names=[name], **options)
        with LocalTritonServer(repo) as server:
            latencies, errors = [], []
            threads = [threading.Thread(target=_client_loop, args=(server.http_url, name, make_feeds, requests,
                                                                   seed, latencies, errors, reference))
                       for seed in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            inferences, executions = _batched_executions(server, name)
        ms = np.array(latencies) * 1e3
        rows.append({"model": name, "dynamic_batching": "on" if batching else "off", "clients": clients,
                     "requests": clients * requests, "throughput_per_s": len(latencies) / seconds,
                     "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
                     "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
                     "errors": len(errors), "inferences": inferences, "executions": executions,
                     "first_error": errors[0] if errors else ""})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="requests per client")
    parser.add_argument("--models", default=",".join(CASES))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgert-serving-") as workdir:
        for name in args.models.split(","):
            rows.extend(run_case(name, args.clients, args.requests, workdir))
    header = ["model", "dynamic batching", "clients x requests", "req/s", "p50 ms", "p99 ms", "errors",
              "executions / inferences"]
    lines = []
    for r in rows:
        lines.append([r["model"], r["dynamic_batching"], f"{r['clients']} x {r['requests'] // r['clients']}",
                      f"{r['throughput_per_s']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["errors"]),
                      f"{r['executions']} / {r['inferences']}"])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for line in lines:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    for r in rows:
        if r["errors"]:
            print(f"{r['model']} ({r['dynamic_batching']}): first error: {r['first_error']}")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
