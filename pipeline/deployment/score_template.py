"""score.py for Azure ML's inference server, serving one validated ONNX model.

onnxgate copies this file verbatim into a package as ``score.py``. It follows
Azure ML's scoring contract: ``init()`` loads the model from
``AZUREML_MODEL_DIR`` into an onnxruntime session, ``run()`` answers one
request. It needs only numpy, onnxruntime and the server
(``azureml-inference-server-http``); settings come from
``onnxgate-serving.json`` beside it.

Request:  ``{"inputs": {"<input name>": <nested list>, ...}}``
Response: ``{"outputs": {"<output name>": <nested list>, ...}}``

Every bad request gets a 4xx with ``{"message": ...}``; only a fault of the
server itself may give a 5xx.
"""
import hashlib
import json
import os

import numpy as np

try:  # present wherever the server runs this file
    from azureml_inference_server_http.api.aml_request import rawhttp
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # imported by onnxgate itself for the JSON helpers below
    def rawhttp(func):
        return func

    AMLResponse = None

SETTINGS_FILE = "onnxgate-serving.json"
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ELEMENTS = 4 * 1024 * 1024
#: Bodies larger than this are refused without being read to the end.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024

_session = None
_inputs = {}
_settings = {}

# onnxruntime type strings -> numpy dtypes for the tensor types a request can carry
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}


class BadRequest(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def to_json_value(value):
    """Arrays, sequences of maps (ZipMap) and scalars as plain JSON values."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return [to_json_value(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


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
    global _session, _inputs, _settings
    import onnxruntime as ort

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, SETTINGS_FILE), encoding="utf-8") as fh:
        _settings = json.load(fh)
    path = _model_path(os.environ.get("AZUREML_MODEL_DIR", here), _settings["model_file"])
    with open(path, "rb") as fh:
        data = fh.read()
    # The gate holds here too: serve only the bytes that were validated.
    digest = hashlib.sha256(data).hexdigest()
    if _settings.get("sha256") and digest != _settings["sha256"]:
        raise RuntimeError(f"{path}: sha256 {digest} is not the packaged model's {_settings['sha256']}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = int(os.environ.get("ONNXGATE_ORT_THREADS", "1"))
    _session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    _inputs = {i.name: i for i in _session.get_inputs()}


def _error(status, message):
    return AMLResponse({"message": message}, status, json_str=True)


def parse_request(raw):
    """JSON text -> {input name: numpy array}, or BadRequest naming the problem."""
    limit = int(_settings.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
    if len(raw) > limit:
        raise BadRequest(f"request body is {len(raw)} bytes; the limit is {limit}", 413)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        raise BadRequest('expected a JSON object {"inputs": {"<input name>": [...], ...}}')
    given = body["inputs"]
    missing = [n for n in _inputs if n not in given]
    unknown = [n for n in given if n not in _inputs]
    if missing or unknown:
        raise BadRequest(f"inputs must be exactly {sorted(_inputs)}; missing {missing}, unknown {unknown}")
    max_elements = int(_settings.get("max_elements", DEFAULT_MAX_ELEMENTS))
    feeds = {}
    for name, meta in _inputs.items():
        feeds[name] = _to_array(name, given[name], meta)
        if feeds[name].size > max_elements:
            raise BadRequest(f"input {name!r} has {feeds[name].size} elements; the limit is {max_elements}", 413)
    return feeds


def _to_array(name, value, meta):
    dtype = _ORT_TYPES.get(meta.type)
    if dtype is None:
        raise BadRequest(f"input {name!r} has type {meta.type}, which this server cannot take over JSON", 422)
    try:
        loose = np.asarray(value)
    except (ValueError, TypeError):
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
    if request.method != "POST":
        return _error(405, 'POST a JSON body {"inputs": {...}} to /score')
    limit = int(_settings.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
    if request.content_length is not None and request.content_length > limit:
        # drain (bounded, never stored) so the client reads the 413 instead of a broken pipe
        remaining = min(request.content_length, DRAIN_LIMIT_BYTES)
        while remaining > 0:
            chunk = request.stream.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
        return _error(413, f"request body is {request.content_length} bytes; the limit is {limit}")
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "request body is not UTF-8 text")
    status, body = score(text)
    return AMLResponse(body, status, json_str=True)
