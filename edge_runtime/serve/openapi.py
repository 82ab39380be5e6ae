"""The OpenAPI 3.1 schema of the whole service, served at /openapi.json: built when the app is,
from the endpoint table (api.ENDPOINTS: paths, methods, token, statuses), the served model's
contract (its name, input size, classes, modes), the settings' limits and the error kinds that
/metrics counts, so that it describes this server as it runs, and nothing typed beside the code.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fmnist_edge import __version__

from .api import ENDPOINTS, Endpoint, is_oip
from .metrics import ERROR_KINDS
from .oip import DATATYPES, EXTENSIONS, HEADER_LENGTH, IMAGE, OUTPUTS, PIXELS, PLATFORM
from .settings import ServeSettings
from .uploads import DEFAULT_TOP_K, FIELD

_JSON = "application/json"
_BINARY = "application/octet-stream"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: tuple[str, ...], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


def _schemas(pool: Any, max_images: int) -> dict[str, Any]:
    """The components: every body the service reads or answers."""
    contract, k = pool.contract, pool.num_classes
    string, integer, number = {"type": "string"}, {"type": "integer"}, {"type": "number"}
    strings = {"type": "array", "items": string}
    label = {"type": "string", "enum": list(contract.class_names)}
    one = _object(
        ("label", "index", "score", "top_k", "model", "ms"),
        label=label,
        index={"type": "integer", "minimum": 0, "maximum": k - 1},
        score=number,
        top_k={
            "type": "array",
            "minItems": 1,
            "maxItems": k,
            "items": _object(("label", "score"), label=label, score=number),
        },
        model=string,
        ms=number,
    )
    tensor = _object(
        ("name", "datatype", "shape"),
        name=string,
        datatype={"type": "string", "enum": list(DATATYPES)},
        shape={"type": "array", "items": integer},
        parameters={"type": "object"},
        data={"type": "array"},
    )
    n = {"type": "integer", "minimum": 1, "maximum": max_images}
    size = {"binary_data_size": {"type": "integer", "minimum": 0}}

    def inference_input(name: str, datatype: str, dims: list[int], data: dict) -> dict:
        shape = [n, *({"const": d} for d in dims)]
        return _object(
            ("name", "datatype", "shape"),
            name={"const": name},
            datatype={"const": datatype},
            shape={"type": "array", "prefixItems": shape, "items": False, "minItems": len(shape)},
            parameters=_object((), **size),
            data=data,
        )

    pixels = inference_input(
        PIXELS,
        "UINT8",
        [contract.height, contract.width, contract.channels],
        {"type": "array", "description": "numbers 0-255, flat or nested, row-major"},
    )
    files = inference_input(
        IMAGE,
        "BYTES",
        [],
        {
            "type": "array",
            "items": {"type": "string", "contentEncoding": "base64"},
            "description": "encoded image files (PNG, JPEG...), base64",
        },
    )
    requested = _object(
        ("name",),
        name={"type": "string", "enum": list(OUTPUTS)},
        parameters=_object((), binary_data={"type": "boolean"}),
    )
    return {
        "Problem": _object(
            ("error", "message", "status"),
            error={"type": "string", "enum": list(ERROR_KINDS)},
            message=string,
            status=integer,
        ),
        "OipError": _object(("error",), error=string),
        "Classification": one,
        "Classifications": {"oneOf": [one, {"type": "array", "minItems": 2, "items": one}]},
        "Health": _object(("status", "model"), status={"const": "ok"}, model=string),
        "ModelInfo": _object(
            ("name", "oip_name", "sha256", "class_names", "input"),
            name=string,
            oip_name=string,
            sha256=string,
            class_names=strings,
            input={"type": "object"},
        ),
        "ServerMetadata": _object(
            ("name", "version", "extensions"), name=string, version=string, extensions=strings
        ),
        "Live": _object(("live",), live={"type": "boolean"}),
        "Ready": _object(("ready",), ready={"type": "boolean"}, name=string),
        "MetadataTensor": _object(
            ("name", "datatype", "shape"),
            name=string,
            datatype=string,
            shape={"type": "array", "items": integer},
        ),
        "ModelMetadata": _object(
            ("name", "platform", "inputs", "outputs"),
            name=string,
            versions=strings,
            platform={"const": PLATFORM},
            inputs={"type": "array", "items": _ref("MetadataTensor")},
            outputs={"type": "array", "items": _ref("MetadataTensor")},
            parameters={"type": "object"},
        ),
        "InferenceRequest": _object(
            ("inputs",),
            id=string,
            parameters=_object(
                (),
                mode={"type": "string", "enum": list(contract.modes)},
                binary_data_output={"type": "boolean"},
            ),
            inputs={
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {"oneOf": [pixels, files]},
            },
            outputs={"type": "array", "minItems": 1, "items": requested},
        ),
        "InferenceResponse": _object(
            ("model_name", "outputs"),
            model_name={"const": contract.name},
            model_version=string,
            id=string,
            outputs={"type": "array", "items": tensor},
        ),
        "OpenAPI": _object(("openapi", "paths"), openapi=string, paths={"type": "object"}),
    }


# The success answer of each kind of endpoint: (media type, schema)
_OK = {
    "page": ("text/html", {"type": "string"}),
    "healthz": (_JSON, _ref("Health")),
    "metrics": ("text/plain", {"type": "string"}),
    "openapi": (_JSON, _ref("OpenAPI")),
    "model": (_JSON, _ref("ModelInfo")),
    "classification": (_JSON, _ref("Classifications")),
    "server_metadata": (_JSON, _ref("ServerMetadata")),
    "live": (_JSON, _ref("Live")),
    "ready": (_JSON, _ref("Ready")),
    "model_metadata": (_JSON, _ref("ModelMetadata")),
    "infer": (_JSON, _ref("InferenceResponse")),
}


def _body(kind: str, settings: ServeSettings) -> dict[str, Any]:
    limit = f"At most {settings.max_body:,} bytes (--max-body)"
    binary = {"type": "string", "format": "binary"}
    if kind == "classify":
        images = {"type": "array", "maxItems": settings.max_images, "items": binary}
        content = {media: {"schema": binary} for media in ("image/png", "image/jpeg", _BINARY)}
        form = _object((FIELD,), **{FIELD: images})
        content["multipart/form-data"] = {"schema": form}
        return {
            "required": True,
            "content": content,
            "description": f"One image as the raw body, or up to {settings.max_images} "
            f"multipart {FIELD!r} fields (--max-images). {limit}.",
        }
    return {
        "required": True,
        "content": {_JSON: {"schema": _ref("InferenceRequest")}, _BINARY: {"schema": binary}},
        "description": f"An inference request as JSON, or with the binary tensor data extension "
        f"(application/octet-stream: the JSON header's length in {HEADER_LENGTH}, then each "
        f"input's binary_data_size bytes). N <= {settings.max_images} (--max-images). {limit}.",
    }


def _parameters(endpoint: Endpoint, pool: Any) -> list[dict[str, Any]]:
    params = []
    for name in ("name", "version"):
        if f"{{{name}}}" in endpoint.path:
            values = [pool.contract.name] if name == "name" else None
            schema = {"type": "string", **({"enum": values} if values else {"example": "1"})}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    query = {
        "mode": {"type": "string", "enum": list(pool.modes), "default": "auto"},
        "top_k": {
            "type": "integer",
            "minimum": 1,
            "maximum": pool.num_classes,
            "default": DEFAULT_TOP_K,
        },
    }
    params += [{"name": q, "in": "query", "schema": query[q]} for q in endpoint.query]
    if endpoint.body == "infer":
        params.append(
            {
                "name": HEADER_LENGTH,
                "in": "header",
                "schema": {"type": "string"},
                "description": "with the binary extension: the JSON header's bytes",
            }
        )
    return params


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    media, schema = _OK[endpoint.ok]
    ok: dict[str, Any] = {"description": "OK", "content": {media: {"schema": schema}}}
    if endpoint.ok == "infer":
        ok["content"][_BINARY] = {"schema": {"type": "string", "format": "binary"}}
        ok["description"] = f"JSON; with binary outputs, {HEADER_LENGTH} gives its length"
    error = _ref("OipError") if is_oip(endpoint.path) else _ref("Problem")
    out = {"200": ok}
    for status in endpoint.statuses[1:]:
        phrase = HTTPStatus(status).phrase if status != 499 else "Client Closed Request"
        out[str(status)] = {"description": phrase, "content": {_JSON: {"schema": error}}}
    return out


def build_openapi(settings: ServeSettings, pool: Any) -> dict[str, Any]:
    """The schema of the service that ``settings`` and ``pool`` (a ClassifierPool) make."""
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        operation: dict[str, Any] = {
            "operationId": e.name,
            "summary": e.summary,
            "parameters": _parameters(e, pool),
            "responses": _responses(e),
        }
        if e.open:
            operation["security"] = []
        if e.body:
            operation["requestBody"] = _body(e.body, settings)
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fmnist-serve",
            "version": __version__,
            "description": f"Model {pool.contract.name!r} ({pool.model_name}). Open Inference "
            f"Protocol (KServe V2) under /v2, extensions: {', '.join(EXTENSIONS)}.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(pool, settings.max_images),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}] if settings.token else [],
    }
