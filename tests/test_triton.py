"""Triton model repositories (edgert.triton, `edgert triton`) and a real tritonserver serving them.

The server tests (marker ``triton``) start the tritonserver binary that the ``nvidia-pytriton`` wheel bundles on
loopback and talk to it with ``tritonclient`` over HTTP and gRPC; they are skipped, with the reason, only where
that wheel or tritonclient is not installed (.ci/run installs both).
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys

import numpy as np
import pytest

import edgert
from edgert.triton import RepositoryError, model_config, write_repository
from models import MODELS

try:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
    from edgert.triton_server import bundled_server
    bundled_server()
    SERVER_MISSING = None
except (ImportError, edgert.EdgeRTError) as e:
    SERVER_MISSING = f"needs tritonclient[http,grpc] and nvidia-pytriton's server ({e})"


@pytest.fixture(scope="module")
def resnet_plan(tmp_path_factory):
    case = MODELS["resnet"]
    path = tmp_path_factory.mktemp("plans") / "resnet.plan"
    edgert.build(case.build(), shapes=case.shapes).save(path)
    return path


def test_static_plan_config_has_exact_dims_and_no_batching(resnet_plan):
    engine = edgert.load(str(resnet_plan))
    config = model_config(engine, "resnet")
    assert config.max_batch_size == 0
    assert [(s.name, s.dtype, s.dims) for s in config.inputs] == [("input", "float32", [1, 3, 64, 64])]
    text = config.to_pbtxt()
    assert 'backend: "python"' in text and "max_batch_size: 0" in text and "KIND_CPU" in text
    assert "dynamic_batching" not in text


@pytest.mark.parametrize("options, message", [
    ({"max_batch_size": 8}, "no dynamic batch dim"),
    ({"dynamic_batching": True}, "dynamic batching needs a batch dim"),
    ({"instances": 0}, "--instances must be >= 1"),
])
def test_config_refuses_what_the_plan_cannot_serve(resnet_plan, options, message):
    with pytest.raises(RepositoryError, match=message):
        model_config(edgert.load(str(resnet_plan)), "resnet", **options)


def test_each_write_adds_a_version(resnet_plan, tmp_path):
    first = write_repository([resnet_plan], tmp_path / "repo", instances=2)
    second = write_repository([resnet_plan], tmp_path / "repo", instances=2)
    assert [p.name for p in first + second] == ["1", "2"]
    model = tmp_path / "repo" / "resnet"
    assert sorted(p.name for p in model.iterdir()) == ["1", "2", "config.pbtxt"]
    for version in ("1", "2"):
        assert (model / version / "model.py").read_text().startswith('"""Triton Python-backend model')
        assert (model / version / "model.plan").read_bytes() == resnet_plan.read_bytes()
    assert "count: 2" in (model / "config.pbtxt").read_text()


def test_repository_errors(resnet_plan, tmp_path):
    with pytest.raises(RepositoryError, match="plan not found"):
        write_repository([tmp_path / "missing.plan"], tmp_path / "repo")
    with pytest.raises(RepositoryError, match="one name"):
        write_repository([resnet_plan, resnet_plan], tmp_path / "repo")
    with pytest.raises(RepositoryError, match="letters, digits"):
        write_repository([resnet_plan], tmp_path / "repo", names=["bad name"])
    (tmp_path / "file").write_text("")
    with pytest.raises(RepositoryError, match="not a directory"):
        write_repository([resnet_plan], tmp_path / "file")
    assert not (tmp_path / "repo").exists()   # nothing is written when a plan is refused


def _cli(*argv):
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "triton", *map(str, argv)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_cli_writes_a_repository_and_reports_user_errors(resnet_plan, tmp_path):
    status, out, err = _cli(resnet_plan, "-o", tmp_path / "repo", "--name", "rn", "--instances", "2")
    assert status == 0, err
    assert (tmp_path / "repo" / "rn" / "1" / "model.plan").is_file() and "rn version 1" in out
    status, _, err = _cli(resnet_plan, "-o", tmp_path / "repo2", "--max-batch-size", "4")
    assert status == 2 and err.count("\n") == 1 and "no dynamic batch dim" in err
    status, _, err = _cli(resnet_plan, "-o", tmp_path / "repo3", "--max-queue-delay-us", "100")
    assert status == 2 and "--dynamic-batching" in err


# --- a real server ---------------------------------------------------------------------------------------------

needs_server = pytest.mark.skipif(SERVER_MISSING is not None, reason=SERVER_MISSING or "")


@pytest.fixture(scope="module")
def served(resnet_plan, tmp_path_factory):
    from edgert.triton_server import LocalTritonServer

    repo = tmp_path_factory.mktemp("repo")
    write_repository([resnet_plan], repo, names=["resnet"], instances=1)
    server = LocalTritonServer(repo)
    yield server
    server.close()


def _reference(plan, feeds):
    return edgert.load(str(plan)).create_execution_context().execute(feeds)


@pytest.mark.triton
@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_answers_equal_direct_execution(served, resnet_plan, protocol):
    client_module = httpclient if protocol == "http" else grpcclient
    client = client_module.InferenceServerClient(served.http_url if protocol == "http" else served.grpc_url)
    x = np.random.default_rng().standard_normal((1, 3, 64, 64)).astype(np.float32)
    request = client_module.InferInput("input", list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    result = client.infer("resnet", [request])
    expected = _reference(resnet_plan, {"input": x})
    for name, array in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), array)


@pytest.mark.triton
@needs_server
def test_concurrent_clients(served, resnet_plan):
    rng = np.random.default_rng()
    inputs = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(16)]

    def infer(x):
        client = httpclient.InferenceServerClient(served.http_url)
        request = httpclient.InferInput("input", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        result = client.infer("resnet", [request])
        return {name: result.as_numpy(name) for name in _reference(resnet_plan, {"input": x})}

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(infer, inputs))
    for x, answer in zip(inputs, answers):
        for name, array in _reference(resnet_plan, {"input": x}).items():
            np.testing.assert_array_equal(answer[name], array)


@pytest.mark.triton
@needs_server
@pytest.mark.parametrize("shape, dtype, name", [
    ((1, 3, 32, 32), np.float32, "input"),     # wrong shape
    ((1, 3, 64, 64), np.float16, "input"),     # wrong dtype
    ((1, 3, 64, 64), np.float32, "image"),     # unknown input, the real one missing
])
def test_bad_requests_get_errors_and_the_server_keeps_serving(served, resnet_plan, shape, dtype, name):
    client = httpclient.InferenceServerClient(served.http_url)
    bad = httpclient.InferInput(name, list(shape), "FP16" if dtype == np.float16 else "FP32")
    bad.set_data_from_numpy(np.zeros(shape, dtype))
    with pytest.raises(InferenceServerException):
        client.infer("resnet", [bad])
    good = httpclient.InferInput("input", [1, 3, 64, 64], "FP32")
    x = np.ones((1, 3, 64, 64), np.float32)
    good.set_data_from_numpy(x)
    result = client.infer("resnet", [good])
    for out_name, array in _reference(resnet_plan, {"input": x}).items():
        np.testing.assert_array_equal(result.as_numpy(out_name), array)
    assert served.running()


@pytest.mark.triton
@needs_server
def test_server_stops_cleanly(resnet_plan, tmp_path):
    from edgert.triton_server import LocalTritonServer

    write_repository([resnet_plan], tmp_path / "repo")
    server = LocalTritonServer(tmp_path / "repo")
    assert server.running()
    assert server.close() == 0
    assert not server.running() and not server.workdir.exists()


# --- plans with an optimization profile: dynamic batching, a dynamic width --------------------------------------

@pytest.fixture(scope="module")
def dynamic_plans(tmp_path_factory):
    """A ResNet-style plan with a dynamic batch (1..8) and a text recognizer with a dynamic batch and width."""
    from dynamic_models import build_text_recognizer, dynamic_export

    folder = tmp_path_factory.mktemp("dynamic_plans")
    resnet = dynamic_export(MODELS["resnet"].build(), {"input": (0,)})
    edgert.build(resnet, profiles=[{"input": ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))}]).save(
        folder / "resnet_dyn.plan")
    edgert.build(build_text_recognizer(), profiles=[{"image": ((1, 3, 48, 64), (2, 3, 48, 320), (4, 3, 48, 960))}]
                 ).save(folder / "recognizer.plan")
    return folder / "resnet_dyn.plan", folder / "recognizer.plan"


def test_profile_plans_batch_in_triton_and_leave_other_dynamic_dims_open(dynamic_plans):
    resnet, recognizer = (edgert.load(str(path)) for path in dynamic_plans)
    config = model_config(resnet, "resnet_dyn", dynamic_batching=True, max_queue_delay_us=20000)
    assert config.max_batch_size == 8 and [s.dims for s in config.inputs] == [[3, 64, 64]]
    assert "max_queue_delay_microseconds: 20000" in config.to_pbtxt()
    with pytest.raises(RepositoryError, match="9"):
        model_config(resnet, "resnet_dyn", max_batch_size=9)
    config = model_config(recognizer, "recognizer")
    assert config.max_batch_size == 4 and [s.dims for s in config.inputs] == [[3, 48, -1]]
    assert [s.dims for s in config.outputs] == [[-1, 37], [-1, 37]]


@pytest.fixture(scope="module")
def served_dynamic(dynamic_plans, tmp_path_factory):
    from edgert.triton_server import LocalTritonServer

    repo = tmp_path_factory.mktemp("dynamic_repo")
    write_repository([dynamic_plans[0]], repo, names=["resnet_dyn"], dynamic_batching=True, max_queue_delay_us=200000)
    write_repository([dynamic_plans[1]], repo, names=["recognizer"], dynamic_batching=True, max_queue_delay_us=1000)
    server = LocalTritonServer(repo)
    yield server
    server.close()


def _infer(url, model, feeds):
    client = httpclient.InferenceServerClient(url)
    requests = []
    for name, array in feeds.items():
        request = httpclient.InferInput(name, list(array.shape), "FP32")
        request.set_data_from_numpy(array)
        requests.append(request)
    return client.infer(model, requests)


def _counts(url, model):
    stats = httpclient.InferenceServerClient(url).get_inference_statistics(model)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


@pytest.mark.triton
@needs_server
def test_dynamic_batching_forms_batches_and_splits_answers(served_dynamic, dynamic_plans):
    rng = np.random.default_rng()
    inputs = [rng.standard_normal((1 + i % 2, 3, 64, 64)).astype(np.float32) for i in range(8)]
    before = _counts(served_dynamic.http_url, "resnet_dyn")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: _infer(served_dynamic.http_url, "resnet_dyn", {"input": x}), inputs))
    inferences, executions = (a - b for a, b in zip(_counts(served_dynamic.http_url, "resnet_dyn"), before))
    assert inferences == sum(x.shape[0] for x in inputs) == 12
    assert executions < len(inputs), f"{executions} executions for {len(inputs)} requests: nothing was batched"
    for x, answer in zip(inputs, answers):
        for name, array in _reference(dynamic_plans[0], {"input": x}).items():
            np.testing.assert_allclose(answer.as_numpy(name), array, rtol=1e-5, atol=1e-6)


@pytest.mark.triton
@needs_server
def test_oversize_batch_and_out_of_profile_width_are_refused(served_dynamic, dynamic_plans):
    with pytest.raises(InferenceServerException, match="batch"):
        _infer(served_dynamic.http_url, "resnet_dyn", {"input": np.zeros((9, 3, 64, 64), np.float32)})
    with pytest.raises(InferenceServerException, match="W|axis 3|960"):
        _infer(served_dynamic.http_url, "recognizer", {"image": np.zeros((1, 3, 48, 1000), np.float32)})
    assert served_dynamic.running()


@pytest.mark.triton
@needs_server
def test_recognizer_serves_every_width_in_its_profile(served_dynamic, dynamic_plans):
    rng = np.random.default_rng()
    for width in (64, 100, 320, 960):
        x = rng.standard_normal((2, 3, 48, width)).astype(np.float32)
        answer = _infer(served_dynamic.http_url, "recognizer", {"image": x})
        for name, array in _reference(dynamic_plans[1], {"image": x}).items():
            assert answer.as_numpy(name).shape == array.shape
            np.testing.assert_allclose(answer.as_numpy(name), array, rtol=1e-5, atol=1e-6)
