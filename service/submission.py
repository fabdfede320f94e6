"""Reading a submission: multipart or JSON body -> bytes, formats and validated options.

The body has already passed the size cap (``BodySizeLimitMiddleware`` aborts while it streams).
The normalised :class:`Submission` is hashed for Idempotency-Key checks, so the same files sent
with another multipart boundary, or the same JSON with another key order, count as the same body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from plcore.json_text import DuplicateKeyError, loads_strict
from plcore.models.spec import ModelSpec
from plcore.models.spec_schema import SIZE_ONLY
from plcore.options import CertifyOptions
from service.errors import ProblemException
from service.schemas import CertificationCreateJSON, InlineData
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore
from service.validation import (
    DATA_SUFFIX,
    MODEL_SUFFIX,
    check_device,
    data_format_for,
    model_format_for,
)
from service.webhooks.urls import (
    MAX_URL_LENGTH,
    CallbackUrlRefused,
    check_callback_url,
    split_callback_url,
)

MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "data"],
    "additionalProperties": False,
    "properties": {
        "model": {
            "type": "string",
            "format": "binary",
            "description": "ONNX file (.onnx) or JSON model spec (.json)",
        },
        "data": {
            "type": "string",
            "format": "binary",
            "description": ".npz (X, y), .npy, .csv or .json ({X, y})",
        },
        "weights": {
            "type": "string",
            "format": "binary",
            "description": "Optional weights for a JSON spec (.safetensors or .npz)",
        },
        "options": {
            "$ref": "#/components/schemas/CertifyOptions",
            "description": 'CertifyOptions as a JSON text field, e.g. {"budget": "fast"}',
            "example": {"budget": "fast"},
        },
        "callback_url": {
            "type": "string",
            "maxLength": MAX_URL_LENGTH,
            "description": "Optional http(s) URL for the signed terminal event (webhook)",
        },
    },
}

JSON_EXAMPLE: dict[str, Any] = {
    "model_spec": {"type": "mlp", "input_dim": 2, "widths": [16], "output_dim": 1},
    "data": {"X": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, -1.0]], "y": [0.0, 1.0, 0.5, -0.5]},
    "options": {"budget": "fast"},
}
"""A small valid JSON submission with inline data (an OpenAPI example; a test submits it)."""

NAMED_DATA_EXAMPLE: dict[str, Any] = {
    "model_spec": {
        "type": "mlp",
        "input_dim": 10,
        "widths": [64],
        "output_dim": 1,
        "activation": "tanh",
    },
    "data": "sklearn:diabetes?n=16",
    "options": {"budget": "fast"},
}
"""A JSON submission on a dataset that ships with scikit-learn (16 samples of diabetes, 10
features): Swagger UI's "Try it out" fills it in first; a browser test executes it."""

SUBMIT_BODY_HOWTO = (
    "Two forms. **JSON** (`application/json`): a model spec with inline data or a named "
    "dataset; the examples succeed as they are from *Try it out*. **Multipart** "
    "(`multipart/form-data`): choose a `model` file (an `.onnx` file, or a `.json` spec such "
    "as the repository's `examples/mlp_tanh_4096.json`), a `data` file (`.npz` with arrays X "
    'and y, such as `examples/sphere16.npz`) and keep `options` as `{"budget": "fast"}`; with '
    'curl: `curl -F model=@model.onnx -F data=@data.npz -F \'options={"budget": "fast"}\' '
    "URL`."
)

SUBMIT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": SUBMIT_BODY_HOWTO,
        # JSON first: the form Swagger UI shows (and "Try it out" sends) by default
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/CertificationCreateJSON"},
                "examples": {
                    "named-dataset": {
                        "summary": "MLP on 16 samples of scikit-learn's diabetes data",
                        "value": NAMED_DATA_EXAMPLE,
                    },
                    "inline-data": {
                        "summary": "Tiny MLP on four inline points",
                        "value": JSON_EXAMPLE,
                    },
                },
            },
            "multipart/form-data": {
                "schema": MULTIPART_SCHEMA,
                "encoding": {"options": {"contentType": "application/json"}},
            },
        },
    }
}


@dataclass(frozen=True)
class Submission:
    """A submission normalised to bytes, formats and validated options."""

    model: bytes
    model_format: str
    data: bytes
    data_format: str
    weights: bytes | None
    options: CertifyOptions
    callback_url: str | None = None

    def body_sha256(self) -> str:
        """Hash of what the job computes (independent of multipart boundaries, key order)."""
        canonical = {
            "model": hashlib.sha256(self.model).hexdigest(),
            "model_format": self.model_format,
            "data": hashlib.sha256(self.data).hexdigest(),
            "data_format": self.data_format,
            "weights": hashlib.sha256(self.weights).hexdigest() if self.weights else None,
            "options": self.options.model_dump(mode="json"),
        }
        if self.callback_url is not None:  # absent from older hashes: they stay valid
            canonical["callback_url"] = self.callback_url
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _invalid(loc: list[str | int], msg: str, type_: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": type_}])


def _options_from(raw: Any) -> CertifyOptions:
    try:
        # Strict: the OpenAPI promises JSON types (0 is not a boolean, "3" not an integer).
        return CertifyOptions.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "options", *e["loc"])} for e in exc.errors()]
        ) from None


async def read_multipart(request: Request) -> Submission:
    """Files ``model``, ``data`` (required) and ``weights``, and the ``options`` JSON field.

    Formats come from the file names' suffixes, else from the content. Other fields are 422.
    """
    try:
        form = await request.form(max_files=3, max_fields=5)
    except StarletteHTTPException as exc:
        # Starlette answers 400 for a malformed body or too many parts; the API's answer for a
        # body it cannot use is 422, the one the OpenAPI lists.
        raise _invalid([], f"unusable multipart body: {exc.detail}", "multipart") from None
    try:
        repeated = sorted({k for k in form if len(form.getlist(k)) > 1})
        if repeated:
            raise _invalid([repeated[0]], f"form fields {repeated} are given more than once")
        parts: dict[str, bytes] = {}
        names: dict[str, str | None] = {}
        for field in ("model", "data", "weights"):
            value = form.get(field)
            if value is None:
                continue
            if not isinstance(value, UploadFile):
                raise _invalid([field], f"'{field}' must be a file part")
            parts[field] = await value.read()
            names[field] = value.filename
        for field in ("model", "data"):
            if field not in parts:
                raise _invalid([field], f"the multipart body has no '{field}' file", "missing")
        unknown = sorted(set(form.keys()) - {"model", "data", "weights", "options", "callback_url"})
        if unknown:
            raise _invalid([unknown[0]], f"unknown form fields {unknown}", "extra_forbidden")
        raw_options = form.get("options")
        if isinstance(raw_options, UploadFile):
            raw_options = (await raw_options.read()).decode("utf-8", "replace")
        try:
            options_obj = loads_strict(raw_options) if raw_options else {}
        except ValueError as exc:
            raise _invalid(
                ["options"], f"options is not valid JSON: {exc}", "json_invalid"
            ) from None
        options = _options_from(options_obj)
        callback_url = form.get("callback_url")
        if isinstance(callback_url, UploadFile):
            raise _invalid(["callback_url"], "'callback_url' must be a text field, not a file")
    finally:
        await form.close()
    model, data = parts["model"], parts["data"]
    return Submission(
        model=model,
        model_format=model_format_for(names["model"], model),
        data=data,
        data_format=data_format_for(names["data"], data),
        weights=parts.get("weights"),
        options=options,
        callback_url=callback_url or None,
    )


JsonBody = TypeVar("JsonBody", bound=BaseModel)


async def parse_json_body(raw: bytes, schema: type[JsonBody]) -> JsonBody:
    """``raw`` validated strictly as ``schema`` (422 with the errors' locations under
    ``body``), and refused when an object repeats a key."""
    try:
        # Size-only: the spec's fields are checked here, its parameter count by the guards
        # (a 422 with the count and PLCERT_MAX_PARAMS) and its shapes by the loader.
        body = schema.model_validate_json(raw, strict=True, context={SIZE_ONLY: True})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None
    # pydantic keeps the last of two equal keys; a body that means one thing here and another
    # to a proxy or an audit log is refused (parsed again only once it is valid, in a thread).
    try:
        await anyio.to_thread.run_sync(loads_strict, raw)
    except DuplicateKeyError as exc:
        raise _invalid([], str(exc), "duplicate_key") from None
    return body


def spec_bytes(spec: ModelSpec) -> bytes:
    """A JSON model spec as stored: canonical JSON (sorted keys, no spaces)."""
    dumped = spec.model_dump(mode="json", exclude_none=False)
    return json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()


def data_bytes(data: InlineData | str) -> tuple[bytes, str]:
    """(bytes, format) of JSON-body data: inline data as JSON ``{"X", "y"}``, a dataset name
    (``"sklearn:..."``) as its UTF-8 text."""
    if isinstance(data, str):
        return data.encode("utf-8"), "named"
    return json.dumps({"X": data.X, "y": data.y}, separators=(",", ":")).encode(), "json"


async def read_json(request: Request) -> Submission:
    """``{"model_spec", "data", "options"}`` (see :func:`spec_bytes`, :func:`data_bytes`)."""
    body = await parse_json_body(await request.body(), CertificationCreateJSON)
    data, data_format = data_bytes(body.data)
    return Submission(
        model=spec_bytes(body.model_spec),
        model_format="json",
        data=data,
        data_format=data_format,
        weights=None,
        options=body.options,
        callback_url=body.callback_url,
    )


def put_submission_files(
    sub: Submission, *, queue: str, artifacts: ArtifactStore
) -> dict[str, Any]:
    """Write the submission's bytes to the artifact store, all or none (a disk that fills
    half-way, :class:`~service.store.artifacts.StorageFull`: a 507, leaves no file of it behind);
    return the ``create_job`` fields of its job, tenant aside."""
    blobs = [(sub.model, MODEL_SUFFIX[sub.model_format]), (sub.data, DATA_SUFFIX[sub.data_format])]
    if sub.weights:
        blobs.append((sub.weights, ".weights"))
    stored = artifacts.put_all(blobs)
    return {
        "options": sub.options.model_dump(mode="json"),
        "model_format": sub.model_format,
        "data_format": sub.data_format,
        "queue": queue,
        "callback_url": sub.callback_url,
        "model_ref": stored[0],
        "data_ref": stored[1],
        "weights_ref": stored[2] if sub.weights else None,
    }


def restore_purged_files(sub: Submission, job: JobRecord, artifacts: ArtifactStore) -> None:
    """Write back the submission's files that a purge removed between put and insert.

    A purge of a deleted job that shared these files may have removed them meanwhile
    (service.store.purge); the new job now counts as a reference, so they are kept from now on.
    """
    for ref, content in ((job.model_ref, sub.model), (job.data_ref, sub.data)):
        if not artifacts.exists(ref):
            artifacts.put(content, suffix=ref[64:])
    if sub.weights and job.weights_ref and not artifacts.exists(job.weights_ref):
        artifacts.put(sub.weights, suffix=".weights")


def store_submission(
    sub: Submission,
    *,
    tenant: str,
    queue: str,
    store: JobStore,
    artifacts: ArtifactStore,
    idempotency_key: str | None,
    body_sha256: str,
) -> tuple[JobRecord, bool]:
    """Write the bytes to the artifact store and create the job (once per Idempotency-Key).

    Returns ``(job, created)``; ``created`` is False when a concurrent request with the same key
    and body created the job first. Raises :class:`~service.store.artifacts.StorageFull` (507)
    with nothing stored when the files do not fit.
    """
    job = {"tenant": tenant, **put_submission_files(sub, queue=queue, artifacts=artifacts)}
    if idempotency_key is None:
        created: tuple[JobRecord, bool] = (store.create_job(**job), True)
    else:
        created = store.create_job_idempotent(
            idempotency_key=idempotency_key, body_sha256=body_sha256, **job
        )
    restore_purged_files(sub, created[0], artifacts)
    return created


async def read_submission(request: Request) -> Submission:
    """Parse a multipart or JSON submission; 415 problem for any other content type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        sub = await read_multipart(request)
    elif ctype == "application/json":
        sub = await read_json(request)
    else:
        raise _unsupported(ctype)
    check_device(sub.options.device)
    return sub


CALLBACK_CHECK_TIMEOUT_S = 10.0
"""Longest wait for the DNS answer of a callback URL's host at submit."""


async def check_callback(url: str | None, *, allow_private: bool) -> None:
    """Refuse (422 ``invalid-callback-url``) a callback URL that is malformed, does not resolve
    or resolves to a refused address (:func:`service.webhooks.urls.check_callback_url`); the
    DNS lookup runs in a thread, within :data:`CALLBACK_CHECK_TIMEOUT_S`."""
    if url is None:
        return
    split_callback_url(url)  # no lookup for what is malformed anyway
    try:
        with anyio.fail_after(CALLBACK_CHECK_TIMEOUT_S):
            await anyio.to_thread.run_sync(
                lambda: check_callback_url(url, allow_private=allow_private),
                abandon_on_cancel=True,
            )
    except TimeoutError:
        raise CallbackUrlRefused(
            f"callback_url host did not resolve within {CALLBACK_CHECK_TIMEOUT_S:g} s"
        ) from None


def _unsupported(ctype: str) -> ProblemException:
    return ProblemException(
        415,
        f"content type {ctype or '(none)'!r} is not accepted; send multipart/form-data "
        "(files model, data) or application/json (model_spec, data)",
        code="unsupported-media-type",
    )
