"""Cold start: plan size, load time and first-inference time, each measured in a fresh process.

    python benchmarks/coldstart.py [--models resnet ...] [--zoo]

The child process imports only edgert.runtime (NumPy + msgpack), as on a device.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile

import _models

CHILD = r"""
import json, sys, time
started = time.perf_counter()
import numpy as np
import edgert.runtime
imported = time.perf_counter()
engine = edgert.runtime.load(sys.argv[1])
context = engine.create_execution_context()
loaded = time.perf_counter()
feeds = {b.name: np.zeros(b.shape, b.dtype) for b in engine.inputs}
context.execute(feeds)
first = time.perf_counter()
print(json.dumps({"import": imported - started, "load": loaded - imported, "first": first - loaded}))
"""


def main() -> None:
    import edgert

    args = _models.parser(__doc__).parse_args()
    print(f"# cold start on CPU — {_models.machine()}, {datetime.date.today()}")
    print("| model | plan KiB | constants KiB | size / (1.02·const + 64 KiB) | import ms | load ms "
          "| first inference ms | load + first ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, shapes) in _models.select(args.models, args.zoo).items():
            path = os.path.join(folder, name.replace("/", "_") + ".plan")
            plan = edgert.build(model, shapes=shapes)
            plan.save(path)
            size = os.path.getsize(path)
            constants = sum(c["nbytes"] for c in plan.document["constants"])
            done = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, check=True)
            t = json.loads(done.stdout)
            budget = 1.02 * constants + 64 * 1024
            print(f"| {name} | {size / 1024:.1f} | {constants / 1024:.1f} | {size / budget:.3f} | "
                  f"{t['import'] * 1e3:.1f} | {t['load'] * 1e3:.1f} | {t['first'] * 1e3:.1f} | "
                  f"{(t['load'] + t['first']) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
