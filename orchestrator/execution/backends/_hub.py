"""Where the weights of a transformers or diffusers card are, and whether they are all there.

A card's ``model`` is a Hugging Face hub id, a local folder, or ``pkg://module/relative/path``.
A hub id counts only when it is fully present in the local Hugging Face cache: nothing here or at
load time touches the network. Loading then reads the cached snapshot folder, not the hub id.
Everything here is fast and imports no ML library.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.cards.backend import pull_hint

__all__ = [
    "MODELS_EXTRA",
    "ModelLocation",
    "hub_cache_dir",
    "hub_files",
    "hub_repo",
    "locate_model",
    "missing_modules_reason",
    "resolve_model_path",
]

MODELS_EXTRA = "pip install 'orchestrator[models]'"
Layout = Literal["transformers", "diffusers"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx")
_MARKER: dict[Layout, str] = {"transformers": "config.json", "diffusers": "model_index.json"}


@dataclass(frozen=True)
class ModelLocation:
    """A card's model resolved on this machine: a folder to load, or why there is none."""

    spec: str
    folder: Path | None
    reason: str | None = None


def missing_modules_reason(modules: list[str]) -> str | None:
    """A reason naming the modules that cannot be imported, and the extra that provides them."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"needs Python packages that are not installed: {', '.join(missing)} ({MODELS_EXTRA})"


def hub_cache_dir() -> str:
    """The Hugging Face hub cache this process reads (honours HF_HOME / HF_HUB_CACHE)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def locate_model(
    spec: str, layout: Layout, gguf_file: str | None = None, card: str | None = None
) -> ModelLocation:
    """Resolve ``spec`` to a complete local folder, or say why it is not available.

    A reason for a hub id ends with the command that downloads it (naming ``card`` if given).
    """
    if spec.startswith("pkg://"):
        try:
            resolved = resolve_model_path(spec)
        except FileNotFoundError as exc:
            return ModelLocation(spec, None, f"{exc}; pip install it")
        return _local(spec, Path(resolved), layout, gguf_file)
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith(("/", ".", "~")) or not _HUB_ID.match(spec):
        return _local(spec, path, layout, gguf_file)
    return _hub(spec, layout, gguf_file, card)


def _local(spec: str, folder: Path, layout: Layout, gguf_file: str | None) -> ModelLocation:
    if not folder.is_dir():
        return ModelLocation(
            spec, None, f"model folder {folder} does not exist (fix backend.model in the card)"
        )
    missing = _incomplete(folder, layout, gguf_file)
    if missing:
        return ModelLocation(spec, None, f"model folder {folder} is incomplete: {missing}")
    return ModelLocation(spec, folder)


def _hub(repo_id: str, layout: Layout, gguf_file: str | None, card: str | None) -> ModelLocation:
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    fix = pull_hint(card or repo_id)
    marker = gguf_file or _MARKER[layout]
    found = try_to_load_from_cache(repo_id, marker)
    if not isinstance(found, str):
        return ModelLocation(
            repo_id,
            None,
            f"weights of {repo_id} are not in the local Hugging Face cache ({cache}); "
            f"download them: {fix}",
        )
    folder = Path(found).parent
    missing = _incomplete(folder, layout, gguf_file)
    if missing:
        return ModelLocation(
            repo_id,
            None,
            f"weights of {repo_id} are only partly in the local Hugging Face cache ({cache}): "
            f"{missing}; finish the download: {fix}",
        )
    return ModelLocation(repo_id, folder)


def hub_repo(spec: str) -> str | None:
    """The hub id a card's ``model`` names, or None for a local folder or a ``pkg://`` path."""
    if spec.startswith(("pkg://", "/", ".", "~")) or not _HUB_ID.match(spec):
        return None
    return None if Path(spec).expanduser().exists() else spec


def hub_files(listing: list[str], layout: Layout, gguf_file: str | None = None) -> list[str]:
    """The files of a hub repo (``listing``) a card of this layout needs, nothing more.

    transformers: the top folder's json/txt/tokenizer files and one kind of weights
    (safetensors when there are any, else PyTorch .bin; never ONNX, TensorFlow or Flax).
    diffusers: ``model_index.json`` and the same choice in each component's folder.
    A GGUF card needs its one file.
    """
    if gguf_file is not None:
        return [gguf_file] if gguf_file in listing else []
    folders: dict[str, list[str]] = {}
    for name in listing:
        folder, _, base = name.rpartition("/")
        folders.setdefault(folder, []).append(base)
    if layout == "transformers":
        return _folder_files("", folders.get("", []))
    if "model_index.json" not in folders.get("", []):
        return []
    chosen = ["model_index.json"]
    for folder, names in sorted(folders.items()):
        if folder and "/" not in folder:  # a component: unet/, vae/, text_encoder/, ...
            chosen += _folder_files(folder, names)
    return chosen


_SMALL_SUFFIXES = (".json", ".txt", ".jinja", ".spm", ".model", ".tiktoken")


def _folder_files(folder: str, names: list[str]) -> list[str]:
    """In one folder: config and tokenizer files, and the weights of one format."""
    weights = [n for n in names if n.endswith(".safetensors")]
    unused = ".bin.index.json"
    if not weights:
        weights = [n for n in names if n.endswith(".bin")]
        unused = ".safetensors.index.json"
    # A variant (x.fp16.safetensors) is left out when the plain file is there.
    plain = {n for n in weights if n.count(".") == 1}
    weights = [n for n in weights if n.count(".") == 1 or _unvariant(n) not in plain]
    small = [n for n in names if n.endswith(_SMALL_SUFFIXES) and not n.endswith(unused)]
    prefix = f"{folder}/" if folder else ""
    return [prefix + n for n in sorted(small + weights)]


def _unvariant(name: str) -> str:
    stem, _, suffix = name.rpartition(".")
    return f"{stem.rpartition('.')[0]}.{suffix}"


def _incomplete(folder: Path, layout: Layout, gguf_file: str | None) -> str | None:
    """What a model folder lacks to be loadable, or None when it looks complete."""
    if gguf_file is not None:
        return None if (folder / gguf_file).is_file() else f"no file {gguf_file}"
    if layout == "transformers":
        if not (folder / "config.json").is_file():
            return "no config.json"
        return _weights_missing(folder)
    return _diffusers_missing(folder)


def _weights_missing(folder: Path) -> str | None:
    """Whether ``folder`` holds model weights: one file, or every shard an index names."""
    # Path.is_file follows symlinks: a cache entry whose blob never arrived counts as missing.
    weights = {p.name for p in folder.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES)}
    weights = {name for name in weights if (folder / name).is_file()}
    sharded: set[str] = set()
    problem = None
    for index in sorted(folder.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            problem = problem or f"unreadable {folder.name}/{index.name}"
            continue
        absent = sorted(shards - weights)
        if shards and not absent:
            return None
        sharded |= shards
        if absent:
            problem = problem or f"{len(absent)} of {len(shards)} shards of {index.name} missing"
    if weights - sharded:
        return None
    return problem or f"no weight files in {folder.name}/"


def _diffusers_missing(folder: Path) -> str | None:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no readable model_index.json"
    for component, value in index.items():
        if component.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        library = str(value[0])
        if library in {"transformers", "diffusers"} and importlib.util.find_spec(library) is None:
            return f"component {component} needs the {library} package ({MODELS_EXTRA})"
        sub = folder / component
        if not sub.is_dir():
            return f"no {component}/ folder"
        if (sub / "config.json").is_file():  # a model (not a scheduler or tokenizer): has weights
            missing = _weights_missing(sub)
            if missing:
                return missing
    return None


def resolve_model_path(spec: str) -> str:
    """Resolve ``pkg://module/relative/path`` to a file inside an installed package.

    Any other spec (a hub id or a local path) is returned unchanged.
    """
    if not spec.startswith("pkg://"):
        return spec
    module, _, relative = spec[len("pkg://") :].partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"package '{module}' is not installed (needed for {spec})")
    # Found without importing it: some weight packages import heavy or absent extras.
    root = Path(next(iter(found.submodule_search_locations)))
    return str(root / relative) if relative else str(root)
