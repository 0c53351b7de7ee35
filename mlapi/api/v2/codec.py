"""The Open Inference Protocol (KServe V2) over HTTP/REST: model signatures and the tensor codec.

No Flask here: `read_body` and `decode_request` turn a request body (JSON, or JSON followed by binary tensor
data as in Triton's binary tensor data extension) into texts and options, and
`encode_response` turns outputs back into a body. Every problem with a request is a
`ProtocolError` whose message is safe to show the client.

A model's signature follows from what its handler can do: every model takes one `BYTES`
input `text` of shape `[-1]` (UTF-8 strings); classifiers answer `label` (`BYTES`,
`[-1]`) and `confidence` (`FP32`, `[-1]`); embedding models answer `embedding`
(`FP32`, `[-1, dimensions]`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlapi.serving.text import has_unusable_character

INPUT_NAME = "text"
EXTENSIONS = ["binary_tensor_data"]
# Request parameters a classifier honours, with v1's bounds (see mlapi.api.v1.inference).
PREDICT_PARAMETERS: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 2.0),
    "max_tokens": (int, 1, 2048),
}
_LENGTH = struct.Struct("<I")  # BYTES elements are each prefixed by their length, little-endian


class ProtocolError(ValueError):
    """The request does not follow the protocol or the model's signature."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class Signature:
    inputs: list[Tensor]
    outputs: list[Tensor]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]


def signature(capabilities: frozenset[str], dimensions: int | None) -> Signature:
    inputs = [Tensor(INPUT_NAME, "BYTES", [-1])]
    if "embed" in capabilities:
        return Signature(inputs, [Tensor("embedding", "FP32", [-1, dimensions or -1])])
    return Signature(inputs, [Tensor("label", "BYTES", [-1]), Tensor("confidence", "FP32", [-1])])


def tensor_metadata(tensors: Sequence[Tensor]) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors]


@dataclass
class InferRequest:
    id: str | None
    texts: list[str]
    parameters: dict[str, Any]
    # Output name -> whether to send it as binary data; every output of the model when empty.
    outputs: dict[str, bool] = field(default_factory=dict)
    binary_by_default: bool = False

    def wants_binary(self, name: str) -> bool:
        return self.outputs.get(name, self.binary_by_default)


@dataclass(frozen=True)
class RawRequest:
    """A request body read but not yet checked: its JSON document and the binary data after it."""

    document: dict[str, Any]
    binary: bytes

    def declared_texts(self, max_items: int) -> int | None:
        """How many texts the input's shape declares, if it declares a valid shape (see `text_count`)."""
        inputs = self.document.get("inputs")
        shape = inputs[0].get("shape") if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) else None
        try:
            return text_count(shape, max_items)
        except ProtocolError:
            return None


def text_count(shape: Any, max_items: int) -> int:
    """The number of texts a client's `shape` declares: `[n]` or `[n, 1]`, 1 <= n <= `max_items`.

    The shape is a list of numbers of any length and size (a 1 MiB body holds 80,000 of them, each
    up to 4,300 digits): it is checked element by element against these bounds before any
    arithmetic, so a bad one costs microseconds. The quota's cost and the decoder both use this.
    """
    if (
        not isinstance(shape, list)
        or len(shape) not in (1, 2)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise ProtocolError(f"input {INPUT_NAME!r} must have shape [n] or [n, 1], of integers")
    count = shape[0]
    if not 1 <= count <= max_items:
        shown = count if abs(count) < 10**9 else "far more"
        raise ProtocolError(f"input {INPUT_NAME!r} must hold 1 to {max_items} texts; got {shown}")
    return count


def read_body(body: bytes, header_length: int | None) -> RawRequest:
    """Split the JSON header from the binary data and parse it (once per request: see mlapi.api.v2.views)."""
    header, binary = split_body(body, header_length)
    return RawRequest(_json_object(header), binary)


def decode_request(
    raw: RawRequest,
    model_signature: Signature,
    *,
    max_items: int,
    validate_text: Callable[[str], None],
) -> InferRequest:
    """Check an inference request against the model's signature."""
    request, binary = raw.document, raw.binary
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(f"'inputs' must hold exactly one tensor, named {INPUT_NAME!r}")
    texts = _decode_text_input(inputs[0], binary, max_items)
    for index, text in enumerate(texts):
        try:
            validate_text(text)
        except ValueError as exc:
            raise ProtocolError(f"input {INPUT_NAME!r} element {index}: {exc}") from None
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    parameters = _parameters(request.get("parameters"), "parameters")
    outputs = _requested_outputs(request.get("outputs"), model_signature)
    binary_default = parameters.pop("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise ProtocolError("parameter 'binary_data_output' must be a boolean")
    return InferRequest(request_id, texts, parameters, outputs, binary_default)


def predict_options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The classifier options among a request's parameters, checked like v1's fields."""
    options: dict[str, Any] = {}
    for name, (kind, low, high) in PREDICT_PARAMETERS.items():
        if name not in parameters:
            continue
        value = parameters[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        # Compared before any conversion: float() of a 400-digit integer overflows.
        valid = number and not (isinstance(value, float) and not math.isfinite(value)) and low <= value <= high
        if valid and kind is int:
            valid = float(value).is_integer()
        if not valid:
            raise ProtocolError(f"parameter {name!r} must be a {kind.__name__} from {low:g} to {high:g}")
        options[name] = kind(value)
    return options


def encode_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: Mapping[str, tuple[str, list[int], np.ndarray | list[str]]],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when any output travels as binary data, the JSON header's length."""
    wanted = request.outputs or dict.fromkeys(outputs, request.binary_by_default)
    tensors, blobs = [], []
    for name in outputs:
        if name not in wanted:
            continue
        datatype, shape, data = outputs[name]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if request.wants_binary(name):
            blob = _to_bytes(datatype, data)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = list(data) if datatype == "BYTES" else np.asarray(data).reshape(-1).tolist()
        tensors.append(tensor)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": tensors}
    if request.id is not None:
        document["id"] = request.id
    if parameters:
        document["parameters"] = dict(parameters)
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def split_body(body: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not 0 < header_length <= len(body):
        raise ProtocolError("Inference-Header-Content-Length is larger than the body")
    return body[:header_length], body[header_length:]


def _json_object(header: bytes) -> dict[str, Any]:
    try:
        document = json.loads(header.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, or an integer past Python's 4,300 digits
        raise ProtocolError("the request is not valid JSON (UTF-8)") from None
    if not isinstance(document, dict):
        raise ProtocolError("the request must be a JSON object")
    return document


def _decode_text_input(tensor: dict[str, Any], binary: bytes, max_items: int) -> list[str]:
    if tensor.get("name") != INPUT_NAME:
        raise ProtocolError(f"unknown input {tensor.get('name')!r}; the model takes {INPUT_NAME!r}")
    if tensor.get("datatype") != "BYTES":
        raise ProtocolError(f"input {INPUT_NAME!r} must have datatype BYTES, not {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    count = text_count(shape, max_items)
    parameters = _parameters(tensor.get("parameters"), f"input {INPUT_NAME!r} parameters")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise ProtocolError(f"input {INPUT_NAME!r}: binary_data_size does not match the binary data sent")
        if "data" in tensor:
            raise ProtocolError(f"input {INPUT_NAME!r} has both 'data' and binary data")
        elements = _bytes_elements(binary)
    else:
        if binary:
            raise ProtocolError("binary data follows the JSON header, but no input declares binary_data_size")
        elements = _json_elements(tensor.get("data"))
    if len(elements) != count:
        raise ProtocolError(f"input {INPUT_NAME!r} has {len(elements)} elements; its shape {shape} says {count}")
    if any(has_unusable_character(element) for element in elements):
        raise ProtocolError(f"input {INPUT_NAME!r} holds a NUL character or an unpaired UTF-16 surrogate; send text")
    return elements


def _json_elements(data: Any) -> list[str]:
    """Strings, flat or nested in row-major order, as the protocol allows."""
    if not isinstance(data, list):
        raise ProtocolError(f"input {INPUT_NAME!r} needs 'data': a list of strings")
    flat: list[str] = []
    pending = [data]
    while pending:  # iterative: a deeply nested list must not exhaust the stack
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, str):
            flat.append(item)
        else:
            raise ProtocolError(f"input {INPUT_NAME!r}: every element must be a string")
    return flat


def _bytes_elements(binary: bytes) -> list[str]:
    elements, offset = [], 0
    while offset < len(binary):
        if offset + _LENGTH.size > len(binary):
            raise ProtocolError(f"input {INPUT_NAME!r}: truncated binary data")
        (length,) = _LENGTH.unpack_from(binary, offset)
        offset += _LENGTH.size
        if offset + length > len(binary):
            raise ProtocolError(f"input {INPUT_NAME!r}: truncated binary data")
        try:
            elements.append(binary[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(f"input {INPUT_NAME!r}: elements must be UTF-8 text") from None
        offset += length
    return elements


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be an object")
    return dict(value)


def _requested_outputs(value: Any, model_signature: Signature) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ProtocolError("'outputs' must be a list")
    requested: dict[str, bool] = {}
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in model_signature.output_names:
            raise ProtocolError(f"unknown output {name!r}; the model has {model_signature.output_names}")
        parameters = _parameters(item.get("parameters"), f"output {name!r} parameters")
        binary = parameters.get("binary_data", False)
        if not isinstance(binary, bool):
            raise ProtocolError(f"output {name!r}: parameter 'binary_data' must be a boolean")
        requested[name] = binary
    return requested


def _to_bytes(datatype: str, data: np.ndarray | list[str]) -> bytes:
    if datatype == "BYTES":
        encoded = [str(item).encode("utf-8") for item in data]
        return b"".join(_LENGTH.pack(len(item)) + item for item in encoded)
    return np.ascontiguousarray(data, dtype="<f4").tobytes()
