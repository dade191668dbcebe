"""Model sources shared by the benchmark scripts: the test models and ONNX's light model zoo."""

from __future__ import annotations

import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def test_models() -> dict:
    """name -> (ModelProto, shapes)"""
    from models import MODELS
    return {name: (case.build(), case.shapes) for name, case in MODELS.items()}


def light_zoo() -> dict:
    import onnx
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    models = {}
    for path in sorted(glob.glob(os.path.join(folder, "light_*.onnx"))):
        name = os.path.basename(path)[len("light_"):-len(".onnx")]
        models[name] = (onnx.load(path), None)
    return models


def parser(description: str) -> argparse.ArgumentParser:
    """The options every CPU benchmark takes: ``--models NAME...`` and ``--zoo``; add a script's own to it."""
    result = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--models", nargs="*", help="test-model (or zoo/NAME) names; default: all")
    result.add_argument("--zoo", action="store_true", help="include ONNX's light model zoo")
    return result


def select(names: list[str] | None, zoo: bool) -> dict:
    models = test_models()
    if zoo:
        models.update({f"zoo/{k}": v for k, v in light_zoo().items()})
    if names:
        missing = [n for n in names if n not in models]
        if missing:
            raise SystemExit(f"unknown model(s) {missing}; choose from {sorted(models)}")
        models = {n: models[n] for n in names}
    return models


def machine() -> str:
    import platform
    return f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})"
