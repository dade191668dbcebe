"""CPU latency of recurrent models: edgert vs onnxruntime, same process, interleaved runs, medians.

    python benchmarks/recurrent.py [--reps 30] [--threads 2]

Models (random weights, built with onnx.helper by tests/test_ops_rnn.py): the CRNN text recognizer (conv +
bidirectional LSTM + MatMul + LogSoftmax), one step of the streaming LSTM (state in, state out), and single
LSTM / GRU layers over longer sequences.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import numpy as np

import _models

from test_ops_rnn import crnn_model, rnn_model, streaming_lstm_model  # noqa: E402  (tests/ is on the path)


def models() -> dict:
    layers = {f"{op.lower()} seq 100 batch 4 hidden 128 bidirectional":
              rnn_model(op, seq=100, batch=4, width=64, hidden=128, direction="bidirectional", h0=True)[0]
              for op in ("LSTM", "GRU")}
    return {"crnn": crnn_model(), "streaming lstm step": streaming_lstm_model(), **layers}


def main() -> None:
    import onnxruntime as ort

    import edgert

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"# recurrent models: edgert vs onnxruntime {ort.__version__} on CPU — {_models.machine()}, "
          f"{datetime.date.today()}, {args.threads} threads, median of {args.reps} interleaved runs")
    print("| model | edgert ms | onnxruntime ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for name, model in models().items():
        context = edgert.load(edgert.build(model)).create_execution_context()
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in context.engine.inputs}
        runs = {"ours": context.execute, "theirs": lambda f: session.run(None, f)}
        times = {key: [] for key in runs}
        for _ in range(3):
            for run in runs.values():
                run(feeds)
        for _ in range(args.reps):
            for key, run in runs.items():
                start = time.perf_counter()
                run(feeds)
                times[key].append(time.perf_counter() - start)
        ours, theirs = (1e3 * statistics.median(times[k]) for k in ("ours", "theirs"))
        print(f"| {name} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
