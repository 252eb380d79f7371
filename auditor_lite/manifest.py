"""``manifest.json``: what a model directory contains and what its graphs promise (docs/artifact.md).

Torch-free (the edge runtime imports it). The manifest lists every file of the directory with its
SHA-256 and size, which ONNX file holds which graph at which precision, each graph's input/output
contract (names, shapes, dtypes, value ranges) and the package versions that produced it.

* :func:`write_manifest` hashes the directory and writes a new manifest (``export onnx``);
* :func:`update_manifest` merges changes into an existing one and re-hashes (``export int8``);
* :func:`load_manifest` reads and verifies one: a file that is missing, altered or not listed (an
  ``.onnx`` file) is refused with a :class:`ManifestError` that names it;
* :func:`check_graph_contract` compares an ONNX Runtime session's inputs/outputs with the contract.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath, PureWindowsPath

from auditor_lite.jsonio import read_json

MANIFEST_FILE = "manifest.json"
FORMAT = "auditor-lite-model"
# 2: the grounded auditor (context graph takes frames, key_index, log_mel and token states; the
# text encoder also returns token_states). A version-1 directory's graphs cannot be fed by this
# runtime at all, so it is refused with a message saying how to get a current one.
FORMAT_VERSION = 2
# Graph precisions the runtime knows, in the order it falls back through them.
PRECISIONS = ("fp32", "int8-cpu", "int8-trt")
# Distributions whose versions are recorded (those not installed are left out).
VERSIONED_PACKAGES = ("auditor-lite", "onnx", "onnxruntime", "torch", "transformers", "optimum",
                      "optimum-onnx", "tokenizers", "tensorrt")
_RESERVED_KEYS = ("format", "format_version", "name", "created", "files", "graphs", "contract",
                  "default_precision", "versions")
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


class ManifestError(ValueError):
    """A model directory that does not match its manifest. The message names the file."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


# ----------------------------------------------------------------------------------- hashing
def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _directory_files(model_dir: Path, hidden: bool = False) -> list[str]:
    """Every file under ``model_dir`` (POSIX relative paths, sorted), except the manifest itself
    and, unless ``hidden``, hidden files (the writer does not vouch for editor and OS droppings
    such as ``.DS_Store``; the loader, with ``hidden=True``, refuses them like any unlisted file)."""
    found = []
    for path in model_dir.rglob("*"):
        relative = path.relative_to(model_dir)
        if (path.is_file() or path.is_symlink()) and relative.as_posix() != MANIFEST_FILE and \
                (hidden or not any(part.startswith(".") for part in relative.parts)):
            found.append(relative.as_posix())
    return sorted(found)


def _check_listed_name(path: Path, name: str) -> None:
    """A listed file must be a plain relative POSIX path below the model directory."""
    pure = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or pure.is_absolute() or PureWindowsPath(name).drive
            or any(part in ("..", ".", "") for part in name.split("/")) or pure.name == MANIFEST_FILE):
        raise ManifestError(path, f"files: {name!r} is not a plain relative path inside the model "
                                  "directory (no '..', no absolute path)")


def hash_directory(model_dir: str | Path) -> dict[str, dict]:
    """``{relative_path: {"sha256": ..., "bytes": ...}}`` for every file of the directory."""
    model_dir = Path(model_dir)
    return {name: {"sha256": sha256_file(model_dir / name), "bytes": (model_dir / name).stat().st_size}
            for name in _directory_files(model_dir)}


def installed_versions(packages=VERSIONED_PACKAGES) -> dict[str, str]:
    """Versions of the installed distributions among ``packages`` (read from metadata: no import)."""
    versions = {}
    for package in packages:
        try:
            versions[package.replace("-", "_")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


# ----------------------------------------------------------------------------------- structure
def _check_structure(path: Path, data) -> None:
    """Raise ManifestError unless ``data`` has the manifest's shape (no file-system checks)."""
    if not isinstance(data, dict):
        raise ManifestError(path, "not a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(path, f"unknown format {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
        raise ManifestError(path, f"this model directory was exported for an older runtime (format_version "
                                  f"{version}; this auditor-lite reads version {FORMAT_VERSION}). Re-export "
                                  "its checkpoint with `auditor-lite export onnx`, or use the packaged "
                                  "default model")
    if version != FORMAT_VERSION:
        raise ManifestError(path, f"unknown format_version {version!r}; this "
                                  f"auditor-lite reads version {FORMAT_VERSION}")
    for key, kind in (("name", str), ("files", dict), ("graphs", dict), ("contract", dict),
                      ("default_precision", str), ("versions", dict)):
        if not isinstance(data.get(key), kind):
            raise ManifestError(path, f"field {key!r} missing or not a {kind.__name__}")
    for name, entry in data["files"].items():
        _check_listed_name(path, name)
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)):
            raise ManifestError(path, f"files[{name!r}]: expected {{'sha256': str, 'bytes': int}}")
    available = set()
    for graph, flavours in data["graphs"].items():
        if not isinstance(flavours, dict) or not flavours:
            raise ManifestError(path, f"graphs[{graph!r}]: expected {{precision: file}}")
        for precision, file_name in flavours.items():
            if precision not in PRECISIONS:
                raise ManifestError(path, f"graphs[{graph!r}]: unknown precision {precision!r}; "
                                          f"known: {', '.join(PRECISIONS)}")
            if not isinstance(file_name, str) or file_name not in data["files"]:
                raise ManifestError(path, f"graphs[{graph!r}][{precision!r}] = {file_name!r} is not "
                                          "among the listed files")
            available.add(precision)
        if graph not in data["contract"]:
            raise ManifestError(path, f"graph {graph!r} has no entry in 'contract'")
        _check_contract_entry(path, graph, data["contract"][graph])
    if data["graphs"] and data["default_precision"] not in available:
        raise ManifestError(path, f"default_precision {data['default_precision']!r} is not the "
                                  f"precision of any graph (have {sorted(available)})")


def _check_contract_entry(path: Path, graph: str, entry) -> None:
    if not isinstance(entry, dict):
        raise ManifestError(path, f"contract[{graph!r}]: expected {{'inputs': [...], 'outputs': [...]}}")
    for side in ("inputs", "outputs"):
        tensors = entry.get(side)
        if not isinstance(tensors, list) or not tensors:
            raise ManifestError(path, f"contract[{graph!r}][{side!r}]: expected a non-empty list")
        for tensor in tensors:
            ok = (isinstance(tensor, dict) and isinstance(tensor.get("name"), str)
                  and isinstance(tensor.get("dtype"), str) and isinstance(tensor.get("shape"), list)
                  and all(isinstance(d, (int, str)) for d in tensor["shape"]))
            if not ok:
                raise ManifestError(path, f"contract[{graph!r}][{side!r}]: each tensor needs "
                                          f"'name', 'shape' (ints / dim names) and 'dtype', got {tensor!r}")


def _write_json_atomically(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


# ----------------------------------------------------------------------------------- writing
def write_manifest(model_dir: str | Path, *, name: str, graphs: dict, contract: dict,
                   default_precision: str, extra: dict | None = None) -> dict:
    """Hash every file of ``model_dir`` and write ``manifest.json``; returns the manifest dict.

    ``graphs`` is ``{graph: {precision: file}}``, ``contract`` ``{graph: {"inputs": [...],
    "outputs": [...]}}`` (tensors as ``{"name", "shape", "dtype", "range"?, "note"?}``; a string
    dimension such as ``"N"`` is dynamic). ``extra`` adds top-level keys (e.g. ``score_calibration``).
    """
    model_dir = Path(model_dir)
    extra = dict(extra or {})
    clashes = sorted(set(extra) & set(_RESERVED_KEYS))
    if clashes:
        raise ValueError(f"write_manifest: extra may not set the reserved keys {clashes}")
    data = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": hash_directory(model_dir),
        "graphs": {g: dict(flavours) for g, flavours in graphs.items()},
        "contract": json.loads(json.dumps(contract)),  # a plain-JSON deep copy
        "default_precision": default_precision,
        "versions": installed_versions(),
        **extra,
    }
    _check_structure(model_dir / MANIFEST_FILE, data)
    _write_json_atomically(model_dir / MANIFEST_FILE, data)
    return data


def update_manifest(model_dir: str | Path, **changes) -> dict:
    """Apply ``changes`` to ``manifest.json``, re-hash the directory and rewrite it.

    ``graphs`` and ``contract`` are merged one level deep (``graphs={"auditor": {"int8-cpu":
    "auditor.int8-cpu.onnx"}}`` adds a flavour and keeps the others); any other key is replaced, and
    a value of ``None`` removes the key. Versions are re-read, so they describe the last writer.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILE
    data = _read_json(path)
    for key in ("files", "versions", "format", "format_version"):
        if key in changes:
            raise ValueError(f"update_manifest: {key!r} is computed, not set")
    for key, value in changes.items():
        if key in ("graphs", "contract") and value is not None:
            merged = {g: dict(v) for g, v in data.get(key, {}).items()}
            for graph, entry in value.items():
                merged[graph] = {**merged.get(graph, {}), **entry} if key == "graphs" else entry
            data[key] = merged
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    data["files"] = hash_directory(model_dir)
    data["versions"] = installed_versions()
    _check_structure(path, data)
    _write_json_atomically(path, data)
    return data


def stage_copy(source: str | Path, out: str | Path) -> Path:
    """A fresh copy of model directory ``source`` next to ``out`` (``.OUT.partial``), for building a
    new model directory that :func:`install_staged` puts in place only when it is complete."""
    out = Path(out)
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, staging)
    return staging


def install_staged(staging: Path, out: str | Path) -> None:
    """Replace ``out`` (if any) with the finished ``staging`` directory."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


# ----------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> dict:
    data = read_json(path, ManifestError, missing="missing: not an auditor-lite model directory (create one "
                                                  "with `auditor-lite export onnx --model CKPT --out DIR`)")
    _check_structure(path, data)
    return data


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest; ``data`` is the raw JSON dict."""

    model_dir: Path
    data: dict

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def graphs(self) -> dict[str, dict[str, str]]:
        return self.data["graphs"]

    @property
    def contract(self) -> dict[str, dict]:
        return self.data["contract"]

    @property
    def default_precision(self) -> str:
        return self.data["default_precision"]

    @property
    def versions(self) -> dict[str, str]:
        return self.data["versions"]

    def file(self, relative: str) -> Path:
        """Absolute path of a listed file; ManifestError if it is not listed."""
        if not isinstance(relative, str) or relative not in self.data["files"]:
            raise ManifestError(self.model_dir / MANIFEST_FILE, f"{relative!r} is not a listed file")
        return self.model_dir / relative

    def optional_file(self, key: str) -> Path | None:
        """The listed file a top-level key names (e.g. ``score_calibration``), or None if unset."""
        value = self.data.get(key)
        return None if value is None else self.file(value)

    def precisions(self, graph: str) -> list[str]:
        return [p for p in PRECISIONS if p in self._flavours(graph)]

    def graph_file(self, graph: str, precision: str | None = None) -> tuple[str, Path]:
        """``(precision, path)`` of ``graph``. Without ``precision``: the default precision if the
        graph has it, else the first available of :data:`PRECISIONS` (the text encoder, for one,
        may ship only at fp32 or only at int8-cpu)."""
        flavours = self._flavours(graph)
        if precision is None:
            order = [self.default_precision] + [p for p in PRECISIONS if p != self.default_precision]
            precision = next(p for p in order if p in flavours)
        elif precision not in flavours:
            raise ManifestError(self.model_dir / MANIFEST_FILE,
                                f"graph {graph!r} has no {precision!r} file (available: "
                                f"{', '.join(self.precisions(graph))})")
        return precision, self.model_dir / flavours[precision]

    def _flavours(self, graph: str) -> dict[str, str]:
        if graph not in self.graphs:
            raise ManifestError(self.model_dir / MANIFEST_FILE,
                                f"no graph {graph!r} (graphs: {', '.join(sorted(self.graphs))})")
        return self.graphs[graph]


def load_manifest(model_dir: str | Path, verify: bool = True) -> Manifest:
    """Read ``model_dir/manifest.json`` and check the directory against it.

    Always checked: the format and version, the structure, that every listed file is a plain
    relative path that stays inside the directory (checked before any file is read), that every
    listed file exists, and that the directory holds no unlisted file (hidden ones included). ``verify=True`` also compares every
    file's size and SHA-256. Any failure is a :class:`ManifestError` naming the file.
    """
    model_dir = Path(model_dir)
    data = _read_json(model_dir / MANIFEST_FILE)
    root = model_dir.resolve()
    for relative in data["files"]:               # confinement first: nothing outside is ever read
        path = model_dir / relative
        if not path.resolve().is_relative_to(root):
            raise ManifestError(path, "resolves outside the model directory (a symbolic link?); "
                                      "model files must lie inside it")
    for relative in _directory_files(model_dir, hidden=True):
        if relative not in data["files"]:
            raise ManifestError(model_dir / relative, "not listed in manifest.json: a model directory "
                                                      "holds only the files its manifest vouches for "
                                                      "(remove it, or re-export the directory)")
    for relative, entry in data["files"].items():
        path = model_dir / relative
        if not path.is_file():
            raise ManifestError(path, "listed in manifest.json but missing")
        if verify:
            size = path.stat().st_size
            if size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
                raise ManifestError(path, f"SHA-256/size differ from manifest.json ({size} bytes, "
                                          f"manifest says {entry['bytes']}): the file was changed "
                                          "after export; re-export or restore it")
    return Manifest(model_dir, data)


# ----------------------------------------------------------------------------------- contract
def _io_fields(item) -> tuple[str, list, str]:
    """``(name, shape, dtype)`` of an ORT NodeArg (``.name``/``.shape``/``.type``) or of a dict
    ``{"name", "shape", "dtype"}``. Dynamic dims come back as strings or None."""
    if isinstance(item, dict):
        return item["name"], list(item["shape"]), item["dtype"]
    return item.name, list(item.shape), _ORT_DTYPES.get(item.type, item.type)


def contract_problems(expected: list[dict], actual: list, side: str) -> list[str]:
    """Differences between contract tensors and a graph's inputs or outputs (empty: they match)."""
    problems = []
    got = {name: (shape, dtype) for name, shape, dtype in map(_io_fields, actual)}
    want = {t["name"]: t for t in expected}
    for name in sorted(set(want) - set(got)):
        problems.append(f"{side} {name!r} is in the contract but not in the graph")
    for name in sorted(set(got) - set(want)):
        problems.append(f"{side} {name!r} is in the graph but not in the contract")
    for name in sorted(set(want) & set(got)):
        shape, dtype = got[name]
        spec = want[name]
        if dtype != spec["dtype"]:
            problems.append(f"{side} {name!r}: dtype {dtype}, contract says {spec['dtype']}")
        # A contract dim name (e.g. "N") must be dynamic in the graph, a number must match exactly:
        # a graph exported with its mask batch baked in is refused here.
        same = len(shape) == len(spec["shape"]) and all(
            (not isinstance(g, int)) if isinstance(w, str) else g == w
            for g, w in zip(shape, spec["shape"]))
        if not same:
            problems.append(f"{side} {name!r}: shape {shape}, contract says {spec['shape']}")
    return problems


def check_graph_contract(manifest: Manifest, graph_name: str, onnx_inputs, onnx_outputs,
                         precision: str | None = None) -> None:
    """Raise ManifestError (naming the graph's file) unless the inputs/outputs of a loaded graph
    (``session.get_inputs()``, ``session.get_outputs()``) match ``contract[graph_name]``."""
    _, path = manifest.graph_file(graph_name, precision)
    contract = manifest.contract[graph_name]
    problems = (contract_problems(contract["inputs"], onnx_inputs, "input")
                + contract_problems(contract["outputs"], onnx_outputs, "output"))
    if problems:
        raise ManifestError(path, "graph does not match its contract in manifest.json: "
                                  + "; ".join(problems))
