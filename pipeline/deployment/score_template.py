"""score.py for Azure ML's inference server, serving one validated ONNX model.

onnxgate copies this file verbatim into a package as ``score.py``. It follows
Azure ML's scoring contract: ``init()`` loads the model from
``AZUREML_MODEL_DIR`` into an onnxruntime session, ``run()`` answers one
request. It needs only numpy, onnxruntime and the server
(``azureml-inference-server-http``); settings come from
``onnxgate-serving.json`` beside it.

Request:  ``{"inputs": {"<input name>": <nested list>, ...}}``
Response: ``{"outputs": {"<output name>": <nested list>, ...}}``

Tabular models (one input per column, or one input ``X`` whose columns the
model names in its ``onnxgate_columns`` metadata) also take records:
``{"inputs": {"<column>": [v, ...], ...}}`` (a flat list per column), or rows
``[{"<column>": v, ...}, ...]``, bare or as ``{"inputs": [...]}``. Values are
coerced to the input's type (null is NaN for a number column, numbers become
text for a string column); a missing column or a value of the wrong kind is a 400.

Answers are strict JSON: a non-finite float is the string ``"NaN"``,
``"Infinity"`` or ``"-Infinity"`` (what ``float()`` and numpy read back).
Requests may use the ``NaN``/``Infinity`` literals; JSON booleans are refused
for number inputs. Every bad request gets a 4xx with ``{"message": ...}``;
only a fault of the server itself may give a 5xx.

``init()`` serves only the validated model: every file that makes it up must
hash to what the validation record beside this file says.
"""

import hashlib
import json
import math
import os
import re
from typing import Any

import numpy as np

try:  # present wherever the server runs this file
    from azureml_inference_server_http.api.aml_request import rawhttp
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # imported by onnxgate itself for the JSON helpers below

    def rawhttp(func):
        return func

    AMLResponse = None

SETTINGS_FILE = "onnxgate-serving.json"
RECORD_FILE = "validation-record.json"
#: Deeper JSON is refused before numpy sees it (numpy stops at 64 dimensions).
MAX_NESTING = 64
#: Set by onnxgate when it starts the server; GET /score?onnxgate=identity echoes it.
NONCE_ENV = "ONNXGATE_SERVER_NONCE"
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_BOOL_TOKEN = re.compile(r"\b(?:true|false)\b")
_NON_FINITE_TOKEN = re.compile(r'"(?:NaN|-?Infinity)"')
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ELEMENTS = 4 * 1024 * 1024
#: Bodies larger than this are refused without being read to the end.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024

_session = None
_inputs: dict[str, Any] = {}
#: Input name -> its column names, for a 2-D input fed by named columns (model metadata).
_columns: dict[str, list] = {}
COLUMNS_METADATA = "onnxgate_columns"
_settings: dict[str, Any] = {}
_model_sha256 = ""

# onnxruntime type strings -> numpy dtypes for the tensor types a request can carry
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class BadRequest(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def to_json_value(value):
    """Arrays, sequences of maps (ZipMap) and scalars as strict JSON values."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return [to_json_value(v) for v in value.tolist()]
        if value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
            return [to_json_value(v) for v in value.tolist()] if value.ndim else _finite(value.item())
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return _finite(value)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[str(value)]
    return value


def dumps(body):
    """Strict JSON text (a bare NaN here is a bug, not an answer)."""
    return json.dumps(body, allow_nan=False)


def model_digest(files):
    """The validated model's sha256 from ``{"onnx": sha, "external": {location: sha}}``:
    the .onnx file's own sha256 when it has no external data."""
    if not files.get("external"):
        return files["onnx"]
    canonical = json.dumps(
        {"onnx": files["onnx"], "external": dict(sorted(files["external"].items()))},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_path(model_dir, name):
    direct = os.path.join(model_dir, name)
    if os.path.isfile(direct):
        return direct
    found = []
    for root, _dirs, files in os.walk(model_dir):  # Azure may nest a registered file one level down
        found += [os.path.join(root, f) for f in files if f == name]
    if len(found) != 1:
        raise RuntimeError(f"expected one {name} under AZUREML_MODEL_DIR={model_dir}, found {len(found)}")
    return found[0]


def init():
    global _session, _inputs, _settings, _model_sha256, _columns
    import onnxruntime as ort

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, SETTINGS_FILE), encoding="utf-8") as fh:
        _settings = json.load(fh)
    path = _model_path(os.environ.get("AZUREML_MODEL_DIR", here), _settings["model_file"])
    with open(path, "rb") as fh:
        data = fh.read()
    # The gate holds here too: serve only the bytes that were validated, as the
    # validation record (shipped beside this file) names them.
    expected = _validated_sha256(here)
    files = {"onnx": hashlib.sha256(data).hexdigest(), "external": {}}
    for location in (expected or {}).get("external") or _settings.get("external_files", []):
        files["external"][location] = file_sha256(os.path.join(os.path.dirname(path), location))
    digest = model_digest(files)
    if _settings.get("sha256") and digest != _settings["sha256"]:
        raise RuntimeError(f"{path}: sha256 {digest} is not the packaged model's {_settings['sha256']}")
    if expected is not None and digest != expected["sha256"]:
        raise RuntimeError(
            f"{path}: sha256 {digest} is not the validated model's {expected['sha256']} "
            f"(validation record {RECORD_FILE})"
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = int(os.environ.get("ONNXGATE_ORT_THREADS", "1"))
    # external data is read from files (verified just above); a plain model from the verified bytes
    source = path if files["external"] else data
    _session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    _inputs = {i.name: i for i in _session.get_inputs()}
    _columns = _named_columns(_session.get_modelmeta().custom_metadata_map)
    _model_sha256 = digest


def _named_columns(metadata):
    try:
        columns = json.loads(metadata.get(COLUMNS_METADATA, "{}"))
    except ValueError:
        return {}
    ok = isinstance(columns, dict) and all(isinstance(v, list) for v in columns.values())
    return {k: [str(c) for c in v] for k, v in columns.items() if k in _inputs} if ok else {}


def _validated_sha256(here):
    """``{"sha256", "external"}`` from the packaged validation record, or None without one."""
    path = os.path.join(here, RECORD_FILE)
    if not os.path.isfile(path):
        if _settings.get("require_record"):
            raise RuntimeError(f"no {RECORD_FILE} beside score.py: refusing to serve an unvalidated model")
        return None
    with open(path, encoding="utf-8") as fh:
        model = json.load(fh).get("model", {})
    return {"sha256": model.get("sha256", ""), "external": dict(model.get("files", {}).get("external", {}))}


def identity():
    """What GET /score?onnxgate=identity answers: proof of which server this is."""
    return {"onnxgate": {"model_sha256": _model_sha256, "nonce": os.environ.get(NONCE_ENV, ""), "pid": os.getpid()}}


def _error(status, message):
    return _json(status, {"message": message})


def parse_request(raw):
    """JSON text -> {input name: numpy array}, or BadRequest naming the problem."""
    limit = int(_settings.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
    if len(raw) > limit:
        raise BadRequest(f"request body is {len(raw)} bytes; the limit is {limit}", 413)
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"request body is nested too deeply (the limit is {MAX_NESTING} levels)") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    _check_nesting(body)
    given = body.get("inputs") if isinstance(body, dict) else body
    if isinstance(given, list) and given and all(isinstance(row, dict) for row in given):
        given = _rows_to_columns(given)
    if not isinstance(given, dict):
        raise BadRequest(
            'expected a JSON object {"inputs": {"<input name>": [...], ...}} or a list of row objects '
            '[{"<column>": value, ...}, ...]'
        )
    given = _records(given)
    missing = [n for n in _inputs if n not in given]
    unknown = [n for n in given if n not in _inputs]
    if missing or unknown:
        raise BadRequest(f"inputs must be exactly {sorted(_inputs)}; missing {missing}, unknown {unknown}")
    max_elements = int(_settings.get("max_elements", DEFAULT_MAX_ELEMENTS))
    feeds = {}
    may_hold_bools = bool(_BOOL_TOKEN.search(raw))
    may_hold_non_finite = bool(_NON_FINITE_TOKEN.search(raw))
    for name, meta in _inputs.items():
        if may_hold_bools:
            _refuse_bools(name, given[name], meta)
        if may_hold_non_finite and _ORT_TYPES.get(meta.type) in (np.float16, np.float32, np.float64):
            given[name] = _read_non_finite(given[name])
        feeds[name] = _to_array(name, given[name], meta)
        if feeds[name].size > max_elements:
            raise BadRequest(f"input {name!r} has {feeds[name].size} elements; the limit is {max_elements}", 413)
    return feeds


def _rows_to_columns(rows):
    """``[{"a": 1, "b": "x"}, ...]`` -> ``{"a": [1, ...], "b": ["x", ...]}``; every row names every column."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    for number, row in enumerate(rows):
        missing = [n for n in names if n not in row]
        if missing:
            raise BadRequest(f"row {number} has no {missing} (other rows have them)")
    return {name: [row[name] for row in rows] for name in names}


def _records(given):
    """Flat column lists -> the model's inputs: a ``[None, 1]`` input per column,
    or the columns of a named 2-D input stacked in the model's order."""
    for name, columns in _columns.items():
        if name not in given and any(c in given for c in columns):
            missing = [c for c in columns if c not in given]
            unknown = [c for c in given if c not in columns]
            if missing or unknown:
                raise BadRequest(f"columns must be exactly {columns}; missing {missing}, unknown {unknown}")
            stacked = [_coerce(c, given.pop(c), np.float32) for c in columns]
            given[name] = [list(row) for row in zip(*stacked)]
    out = {}
    for name, value in given.items():
        meta = _inputs.get(name)
        if meta is not None and _is_column(value) and len(meta.shape) == 2 and meta.shape[1] == 1:
            value = [[v] for v in _coerce(name, value, _ORT_TYPES.get(meta.type))]
        out[name] = value
    return out


def _is_column(value):
    return isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value)


def _coerce(name, values, dtype):
    """One column's JSON values as the input's type: null -> NaN for floats,
    numbers -> text for strings; anything else is left for the type checks."""
    if not _is_column(values):
        raise BadRequest(f"column {name!r} must be a flat list of values")
    if dtype is np.object_:
        return ["" if v is None else v if isinstance(v, str) else _text(name, v) for v in values]
    if dtype is not None and np.dtype(dtype).kind == "f":
        for v in values:
            if isinstance(v, str) and v not in ("NaN", "Infinity", "-Infinity"):
                raise BadRequest(f"column {name!r} takes numbers, got {v[:40]!r}")
        return [float("nan") if v is None else float(v) if isinstance(v, str) else v for v in values]
    return values


def _text(name, value):
    if isinstance(value, bool):
        raise BadRequest(f"column {name!r} takes strings, got a boolean")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_non_finite(value):
    """The strings this server answers non-finite floats with, read back as floats."""
    if isinstance(value, list):
        return [_read_non_finite(v) for v in value]
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value)
    return value


def _check_nesting(body):
    """Deeper than numpy can hold is a 400 with a reason (walks one path down, cheap)."""
    depth, node = 0, body
    while isinstance(node, (list, dict)) and node:
        depth += 1
        if depth > MAX_NESTING:
            raise BadRequest(f"request body is nested too deeply (the limit is {MAX_NESTING} levels)")
        node = next(iter(node.values())) if isinstance(node, dict) else node[0]


def _refuse_bools(name, value, meta):
    """JSON true/false for a number input would silently become 1/0."""
    if _ORT_TYPES.get(meta.type) is np.bool_:
        return
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, bool):
            raise BadRequest(f"input {name!r} holds booleans; {meta.type} takes numbers")
        if isinstance(node, list):
            stack.extend(node)


def _to_array(name, value, meta):
    dtype = _ORT_TYPES.get(meta.type)
    if dtype is None:
        raise BadRequest(f"input {name!r} has type {meta.type}, which this server cannot take over JSON", 422)
    try:
        loose = np.asarray(value)
    except (ValueError, TypeError, RecursionError):
        raise BadRequest(f"input {name!r} is not a rectangular array") from None
    if loose.dtype.kind == "O" and dtype is not np.object_:
        raise BadRequest(f"input {name!r} is not a rectangular array of numbers")
    if dtype is np.object_:
        if loose.dtype.kind != "U" and loose.size:
            raise BadRequest(f"input {name!r} must hold strings ({meta.type})")
        array = loose.astype(object)
    elif np.dtype(dtype).kind == "b":
        if loose.dtype.kind != "b" and loose.size:
            raise BadRequest(f"input {name!r} must hold booleans ({meta.type})")
        array = loose.astype(dtype)
    else:
        if loose.dtype.kind not in "biuf" and loose.size:
            raise BadRequest(f"input {name!r} must hold numbers ({meta.type}), got {loose.dtype.kind!r} values")
        if np.dtype(dtype).kind in "iu" and loose.dtype.kind == "f" and not np.all(np.mod(loose, 1) == 0):
            raise BadRequest(f"input {name!r} must hold integers ({meta.type})")
        try:
            with np.errstate(all="ignore"):
                array = loose.astype(dtype)
        except (ValueError, OverflowError):
            raise BadRequest(f"input {name!r} cannot be cast to {meta.type}") from None
        if np.dtype(dtype).kind in "iu" and not np.array_equal(array, loose):
            raise BadRequest(f"input {name!r} has values out of range for {meta.type}")
    _check_shape(name, array.shape, meta.shape)
    return array


def _check_shape(name, shape, expected):
    if len(shape) != len(expected):
        raise BadRequest(f"input {name!r} has shape {list(shape)}; the model expects rank {len(expected)} {expected}")
    for got, want in zip(shape, expected):
        if isinstance(want, int) and want >= 0 and got != want:
            raise BadRequest(f"input {name!r} has shape {list(shape)}; the model expects {expected}")


def score(raw):
    """Parse, run, encode: returns (status, JSON-able body)."""
    try:
        feeds = parse_request(raw)
    except BadRequest as exc:
        return exc.status, {"message": str(exc)}
    names = [o.name for o in _session.get_outputs()]
    try:
        values = _session.run(names, feeds)
    except Exception as exc:  # the input passed every check but the graph rejects it: still the caller's input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return 422, {"message": f"the model cannot run on this input: {first}"}
    return 200, {"outputs": {n: to_json_value(v) for n, v in zip(names, values)}}


@rawhttp
def run(request):
    if request.method == "GET" and request.args.get("onnxgate") == "identity":
        return _json(200, identity())
    if request.method != "POST":
        return _error(405, 'POST a JSON body {"inputs": {...}} to /score')
    limit = int(_settings.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
    if request.content_length is not None and request.content_length > limit:
        if request.content_length <= DRAIN_LIMIT_BYTES:  # beyond, a drain would only wait on a liar
            _drain(request.stream, request.content_length)
        return _error(413, f"request body is {request.content_length} bytes; the limit is {limit}")
    # read at most limit + 1 bytes: a chunked body (no Content-Length) is never buffered beyond the limit
    raw = _read_at_most(request.stream, limit + 1)
    if len(raw) > limit:
        _drain(request.stream, DRAIN_LIMIT_BYTES)
        return _error(413, f"request body is over the limit of {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "request body is not UTF-8 text")
    status, body = score(text)
    return _json(status, body)


def _read_at_most(stream, size):
    parts, left = [], size
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _drain(stream, size):
    """Read (never store) up to ``size`` bytes so the client reads the 413
    instead of a broken pipe; beyond that the connection is simply closed."""
    left = min(size, DRAIN_LIMIT_BYTES)
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        left -= len(chunk)


def _json(status, body):
    return AMLResponse(dumps(body), status, {"Content-Type": "application/json"})
