"""fmnist-serve speaks the Open Inference Protocol (KServe V2) to clients no one here wrote:
NVIDIA's tritonclient (binary and JSON tensors, pixels and image files), for the bundled model
and a 16x16 RGB one, and schemathesis fuzzing the service against its own /openapi.json. Bad
requests get a 4xx with the protocol's one-line error, and the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from serve_helpers import call, start_server

TOKEN = "oip-test-token-0123456789abcdef"


def _auth() -> dict[str, str]:
    """A new dict each call: tritonclient writes its own headers into the one it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


OUTPUTS = ("probabilities", "label", "index")


@pytest.fixture(scope="module", params=["bundled", "rgb16"])
def served(request):
    """(server, model path or None) with a token, one per model."""
    model = None if request.param == "bundled" else request.getfixturevalue("rgb16_tflite")
    args = ["--workers", "1", *(["--model", str(model)] if model else [])]
    server = start_server(args, env={"FMNIST_SERVE_TOKEN": TOKEN})
    yield server, model
    server.stop()


def _images(fmnist_test, height: int, width: int, channels: int, n: int = 3) -> np.ndarray:
    """``n`` real test images as (n, H, W, C) uint8 in a model's size and colour."""
    out = []
    for pixels in fmnist_test.images[:n]:
        img = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        rgb = np.asarray(img.convert("RGB")) * np.array([1.0, 0.6, 0.6])  # a tint: not gray
        out.append(rgb.astype(np.uint8) if channels == 3 else np.asarray(img)[..., None])
    return np.stack(out)


def _png(pixels: np.ndarray, scale: int = 1) -> bytes:
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _client(server):
    import tritonclient.http as httpclient

    return httpclient, httpclient.InferenceServerClient(f"{server.host}:{server.port}")


def _check(result, clf, expected: np.ndarray) -> None:
    """tritonclient's answer holds the Classifier's probabilities, labels and indices."""
    probs = result.as_numpy("probabilities")
    assert probs.dtype == np.float32 and probs.shape == expected.shape
    np.testing.assert_allclose(probs, expected, atol=1e-6, rtol=0)
    index = result.as_numpy("index")
    assert index.dtype == np.int32 and index.tolist() == expected.argmax(axis=1).tolist()
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [clf.class_names[i] for i in index]


def test_tritonclient_health_metadata_and_infer(served, fmnist_test):
    from fmnist_edge import Classifier

    server, model = served
    httpclient, client = _client(server)
    clf = Classifier(model)
    name = "default" if model is None else model.stem
    assert client.is_server_live() and client.is_server_ready()  # open, as monitors poll them
    assert client.is_model_ready(name, headers=_auth())
    meta = client.get_model_metadata(name, headers=_auth())
    h, w = clf.image_size
    c = 3 if clf.color == "rgb" else 1
    assert meta["name"] == name and meta["platform"] == "tflite"
    assert model is None or (h, w, c) == (16, 16, 3)  # the other model is another size, RGB
    assert meta["inputs"][0] == {"name": "pixels", "datatype": "UINT8", "shape": [-1, h, w, c]}
    assert meta["parameters"]["class_names"] == list(clf.class_names)
    assert call(server, "GET", "/v1/model", headers=_auth()).json()["oip_name"] == name

    pixels = _images(fmnist_test, h, w, c)
    expected = clf.predict_proba(pixels)
    files = [_png(p) for p in pixels] + [_png(pixels[0], scale=3)]  # and one to resize
    expected_files = clf.predict_proba(np.stack([clf.to_array(f) for f in files]))
    for binary in (True, False):
        asked = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in OUTPUTS]
        tensor = httpclient.InferInput("pixels", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        _check(client.infer(name, [tensor], outputs=asked, headers=_auth()), clf, expected)
        data = np.array(files if binary else [base64.b64encode(f) for f in files], dtype=object)
        tensor = httpclient.InferInput("image", [len(files)], "BYTES")
        tensor.set_data_from_numpy(data, binary_data=binary)
        result = client.infer(name, [tensor], outputs=asked, headers=_auth(), model_version="1")
        _check(result, clf, expected_files)
    # no outputs named: tritonclient asks for all of them as binary data
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    _check(client.infer(name, [tensor], headers=_auth()), clf, expected)


def test_tritonclient_sees_refusals_as_4xx_with_one_line(served, fmnist_test):
    from tritonclient.utils import InferenceServerException

    server, model = served
    httpclient, client = _client(server)
    meta = client.get_model_metadata("default" if model is None else model.stem, headers=_auth())
    name, shape = meta["name"], meta["inputs"][0]["shape"][1:]
    pixels = np.zeros((1, *shape), np.uint8)
    cases = [
        ("nope", "pixels", [1, *shape], "UINT8", pixels, "404", "not served here"),
        (name, "pixels", [1, shape[0] + 1, *shape[1:]], "UINT8", None, "400", "is not [N,"),
        (name, "pixels", [1, *shape], "FP32", pixels.astype(np.float32), "400", "takes UINT8"),
    ]
    for model_name, input_name, dims, datatype, data, status, words in cases:
        tensor = httpclient.InferInput(input_name, dims, datatype)
        if data is None:
            tensor.set_data_from_numpy(np.zeros(dims, np.uint8))
        else:
            tensor.set_data_from_numpy(data)
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model_name, [tensor], headers=_auth())
        assert caught.value.status() == status and words in caught.value.message()
        assert "\n" not in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata(name)  # no token
    assert caught.value.status() == "401"


def _infer(server, body: bytes, header_length: int | None = None, name: str = "default"):
    headers = _auth()
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    return call(server, "POST", f"/v2/models/{name}/infer", body, headers)


def _head_only(server, path: str, body: bytes, header_length: int) -> tuple[int, dict]:
    """POST the head of a request of ``body``, without the body: the status and JSON answer,
    which come before it. (Body bytes the server never reads would turn its close into a
    reset, which can drop the answer before it is read.)"""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nInference-Header-Content-Length: {header_length}"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(head.encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def _binary(header: dict, data: bytes) -> tuple[bytes, int]:
    head = json.dumps(header).encode()
    return head + data, len(head)


def _pixels_input(shape, data=None, **parameters) -> dict:
    tensor = {"name": "pixels", "datatype": "UINT8", "shape": shape}
    if data is not None:
        tensor["data"] = data
    if parameters:
        tensor["parameters"] = parameters
    return tensor


def test_bad_requests_get_4xx_one_line_and_the_server_keeps_serving(served):
    server, model = served
    name = "default" if model is None else model.stem
    shape = call(server, "GET", f"/v2/models/{name}", headers=_auth()).json()["inputs"][0]["shape"]
    one, size = [1, *shape[1:]], int(np.prod(shape[1:]))
    big = 10_000 * size  # a 10,000-image batch: past the 4 MiB body limit
    cases = {
        "missing inputs": (json.dumps({"outputs": [{"name": "label"}]}).encode(), None, 400),
        "shape vs data": (json.dumps({"inputs": [_pixels_input(one, [0] * (size - 1))]}).encode(),
                          None, 400),
        "FP32 as UINT8": (json.dumps({"inputs": [_pixels_input(one, [0.5] * size)]}).encode(),
                          None, 400),
        "N = 0": (json.dumps({"inputs": [_pixels_input([0, *shape[1:]], [])]}).encode(), None, 400),
        "binary past the body": (*_binary({"inputs": [_pixels_input(one, binary_data_size=size)]},
                                          bytes(100)), 400),
        "header length past the body": (b'{"inputs": []}', 999, 400),
        "not JSON": (b"\x89PNG\r\n", None, 400),
        "bad base64": (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES",
                                               "shape": [1], "data": ["%%%"]}]}).encode(),
                       None, 400),
        "not an image": (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES",
                                                 "shape": [1], "data": ["aGVsbG8="]}]}).encode(),
                         None, 415),
        "unknown output": (json.dumps({"inputs": [_pixels_input(one, [0] * size)],
                                       "outputs": [{"name": "logits"}]}).encode(), None, 400),
    }  # fmt: skip
    for case, (body, header_length, status) in cases.items():
        reply = _infer(server, body, header_length, name)
        assert reply.status == status, (case, reply.body)
        assert reply.headers["content-type"] == "application/json", case
        error = reply.json()
        assert list(error) == ["error"] and "\n" not in error["error"], (case, error)
    # a 10,000-image batch, 7.8 MB: refused on its Content-Length, before the body is read
    body, header_length = _binary(
        {"inputs": [_pixels_input([10_000, *shape[1:]], binary_data_size=big)]}, bytes(big)
    )
    status, error = _head_only(server, f"/v2/models/{name}/infer", body, header_length)
    assert status == 413 and list(error) == ["error"] and "4,194,304-byte" in error["error"]
    refused = call(server, "POST", f"/v2/models/{name}/infer", b"{}")  # no token
    assert refused.status == 401 and list(refused.json()) == ["error"]
    assert call(server, "GET", "/v2/health/ready").status == 200  # open
    good = json.dumps({"inputs": [_pixels_input(one, [0] * size)]}).encode()
    loop_jobs = _loop_jobs(server)
    reply = _infer(server, good, name=name)
    assert reply.status == 200 and reply.json()["outputs"][1]["name"] == "label"
    assert _loop_jobs(server) == loop_jobs + 1  # one image, the server idle: on its event loop


def _loop_jobs(server) -> float:
    text = call(server, "GET", "/metrics", headers=_auth()).body.decode()
    found = re.search(r'^fmnist_serve_jobs_total\{where="event_loop"\} (\S+)$', text, re.M)
    assert found, text
    return float(found.group(1))


def test_openapi_schema_lists_exactly_the_apps_routes(served):
    from fmnist_edge.edge_runtime.serve.app import build_app
    from fmnist_edge.edge_runtime.serve.settings import ServeSettings
    from fmnist_edge.edge_runtime.serve.workers import ClassifierPool

    server, model = served
    schema = call(server, "GET", "/openapi.json", headers=_auth()).json()
    assert call(server, "GET", "/openapi.json").status == 401  # it names the model: guarded
    settings = ServeSettings(model=str(model) if model else None, workers=1, threads=1)
    pool = ClassifierPool(settings)
    try:
        app = build_app(settings, pool)
    finally:
        pool.close()
    routes = {(r.path, m.lower()) for r in app.routes for m in r.methods if m != "HEAD"}
    documented = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert documented == routes
    for path, ops in schema["paths"].items():
        for op in ops.values():
            assert "200" in op["responses"] and "500" in op["responses"], path
            assert ("401" in op["responses"]) != (op.get("security") == []), path


def test_schemathesis_finds_nothing(tmp_path):
    """schemathesis 4 against /openapi.json on a live server with a token: every phase
    (examples, coverage, fuzzing, stateful) once over every operation, with the checks below
    and at most 50 cases per operation. No --max-time: given one, schemathesis repeats fuzzing
    and stateful testing until it is spent. Not checked: positive_data_acceptance (a schema
    cannot say that the bytes must decode as an image or that data must fill the shape, so
    valid-looking requests are rightly refused) and negative_data_rejection (it does not count
    413 as a rejection, and too many images is a 413)."""
    server = start_server(["--workers", "1"], env={"FMNIST_SERVE_TOKEN": TOKEN})
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance,missing_required_header,"
        "unsupported_method,allow_header_conformance,ignored_auth"
    )
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"),
        *("--header", f"Authorization: Bearer {TOKEN}", "--checks", checks),
        *("--max-examples", "50", "--request-timeout", "10"),
        *("--seed", "0", "--workers", "1", "--no-color"),
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "14 selected" in run.stdout or "15 selected" in run.stdout, run.stdout[-3000:]
    selected = re.search(r"Selected: (\d+)/", run.stdout).group(1)
    assert f"Tested: {selected}\n" in run.stdout, run.stdout[-3000:]  # every operation ran
    assert "Traceback" not in server.stderr(), server.stderr()


@pytest.mark.parametrize(
    "header",
    [
        [],
        {"inputs": {}},
        {"inputs": ["pixels"]},
        {"inputs": [{"name": "pixels", "datatype": ["UINT8"], "shape": [1, 2, 2, 1]}]},
        {"inputs": [{"name": ["pixels"], "datatype": "UINT8", "shape": [1, 2, 2, 1]}]},
        {"inputs": [_pixels_input([1, 2, 2, 1], {"a": 1})]},
        {"inputs": [_pixels_input([1, 2, 2, 1], [[1, 2], [3]])]},
        {"inputs": [_pixels_input([1, 2, 2, 1], [2**70, 0, 0, 0])]},
        {"inputs": [_pixels_input([1, 2, 2, 1], [True, False, True, False])]},
        {"inputs": [_pixels_input([1, 2, 2, 1], [1, 2, 3, 256])]},
        {"inputs": [_pixels_input([1, 2, 2, 1], "1234")]},
        {"inputs": [_pixels_input([1, -2, 2, 1], [0] * 4)]},
        {"inputs": [_pixels_input([1, 2, 2, 1], [0] * 4)], "id": 7},
        {"inputs": [_pixels_input([1, 2, 2, 1], [0] * 4)], "outputs": [{"name": "label"}] * 2},
        {"inputs": [_pixels_input([1, 2, 2, 1], [0] * 4)], "outputs": ["label"]},
        {"inputs": [_pixels_input([33, 2, 2, 1], [0] * 132)]},
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]},
        {"inputs": [_pixels_input([1, 2, 2, 1], [0] * 4)], "parameters": {"mode": ["raw"]}},
    ],
)
def test_parse_request_refuses_malformed_json_with_a_4xx_problem(header):
    from fmnist_edge.edge_runtime.serve.oip import Contract, parse_request
    from fmnist_edge.edge_runtime.serve.uploads import Problem

    contract = Contract("m", 2, 2, 1, ("a", "b"), ("auto", "raw"))
    with pytest.raises(Problem) as caught:
        parse_request(json.dumps(header).encode(), None, contract, max_images=32)
    assert caught.value.status in (400, 413) and "\n" not in caught.value.message


def test_parse_request_reads_binary_bytes_and_pixels():
    from fmnist_edge.edge_runtime.serve.oip import Contract, parse_request

    contract = Contract("m", 2, 2, 1, ("a", "b"), ("auto", "raw"))
    files = [b"\x89PNG one", b"two"]
    data = b"".join(struct.pack("<I", len(f)) + f for f in files)
    header = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                          "parameters": {"binary_data_size": len(data)}}],
              "parameters": {"mode": "raw", "binary_data_output": True}}  # fmt: skip
    body, length = _binary(header, data)
    asked = parse_request(body, str(length), contract, max_images=32)
    assert [f for _, f in asked.files] == files and asked.mode == "raw"
    assert asked.outputs == (("probabilities", True), ("label", True), ("index", True))
    pixels = {"inputs": [_pixels_input([1, 2, 2, 1], [[[[0], [1]], [[2], [255]]]])]}
    asked = parse_request(json.dumps(pixels).encode(), None, contract, max_images=32)
    assert asked.pixels.dtype == np.uint8 and asked.pixels.ravel().tolist() == [0, 1, 2, 255]
