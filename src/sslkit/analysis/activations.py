"""Activations for sparse autoencoders: from any named module of a torch model, or from a file.

A forward hook on the module chosen by name (``model.get_submodule(name)``: e.g. ``blocks.3`` of an
sslkit/timm ViT, ``layer2`` of a timm ResNet, ``model.layers.15`` of a Hugging Face Llama) turns
each batch's output into rows and streams them into an :class:`ActivationBuffer` of fixed
capacity. Once the buffer is full the hook stops the forward pass, so the layers above the hooked
one are never computed for the last batch and nothing beyond ``max_samples`` rows is kept.

How a module's output becomes rows (``tokens``):

==========  ==========================  ====================================  ======================
output      ``"all"``                   ``"mean"``                            ``"last"`` / ``"first"``
==========  ==========================  ====================================  ======================
(B, D)      the rows                    the rows                              the rows
(B, T, D)   every valid token (minus    mean over valid tokens (minus the     last valid / first
            the first ``skip`` ones)    first ``skip``)                       token
(B, C, H, W) every position (C-dim rows) spatial mean                         not defined
==========  ==========================  ====================================  ======================

"Valid" follows the attention mask of a language-model batch (padding never becomes a row); for a
ViT, ``skip`` defaults to the prefix tokens (class + registers), so "all" means patch tokens.

Files: ``.pt``/``.pth`` (a tensor, loaded with ``weights_only=True``), ``.npy`` (no pickles) and
``.safetensors`` (the tensor named ``activations``, or the only one) holding an (N, D) matrix.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from sslkit.atomic_files import save_safetensors_atomic
from sslkit.config import ConfigError
from sslkit.data.errors import DataError

__all__ = [
    "ActivationBuffer",
    "TOKEN_CHOICES",
    "module_names",
    "find_module",
    "tokens_to_rows",
    "capture_activations",
    "capture_image_activations",
    "capture_lm_activations",
    "text_corpus",
    "load_activations",
    "save_activations",
]

TOKEN_CHOICES = ("all", "mean", "last", "first")


class ActivationBuffer:
    """A fixed-capacity (capacity, D) float32 store filled batch by batch.

    The width D is fixed by the first batch. ``add`` keeps what fits and reports how many rows it took.
    """

    def __init__(self, capacity: int, dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"ActivationBuffer capacity must be positive, got {capacity}.")
        self.capacity, self.dtype = int(capacity), dtype
        self._data: torch.Tensor | None = None
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def full(self) -> bool:
        return self._size >= self.capacity

    def add(self, rows: torch.Tensor) -> int:
        """Append rows (n, D); returns how many were stored (fewer when the buffer fills up)."""
        rows = rows.detach().reshape(rows.shape[0], -1)
        if self._data is None:
            self._data = torch.empty(self.capacity, rows.shape[1], dtype=self.dtype)
        elif rows.shape[1] != self._data.shape[1]:
            raise ValueError(f"ActivationBuffer holds rows of width {self._data.shape[1]}, got {rows.shape[1]}.")
        take = min(rows.shape[0], self.capacity - self._size)
        self._data[self._size:self._size + take] = rows[:take].to(device="cpu", dtype=self.dtype)
        self._size += take
        return take

    def tensor(self) -> torch.Tensor:
        """The stored rows (n, D) (a view; empty (0, 0) if nothing was added)."""
        if self._data is None:
            return torch.empty(0, 0, dtype=self.dtype)
        return self._data[:self._size]


class _BufferFull(Exception):
    """Raised inside the hook to stop a forward pass whose remaining layers are not needed."""


# ------------------------------------------------------------------------------- modules


def module_names(model: nn.Module) -> list[str]:
    """All addressable submodule names (``""`` — the model itself — excluded)."""
    return [name for name, _ in model.named_modules() if name]


def find_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``, with an error that suggests close names when it is missing."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = module_names(model)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"e.g. {', '.join(names[:5])}"
        raise ConfigError(f"Layer {name!r} is not a module of {type(model).__name__} ({len(names)} modules; "
                          f"{hint}); pass one of them to --layer.") from None


def _output_tensor(output: Any) -> torch.Tensor:
    # Modules return a tensor, a tuple (HF layers in older versions: (hidden, attn, ...)) or a
    # ModelOutput; the hidden state is the first tensor in each case.
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"the hooked module returned {type(output).__name__}, which holds no tensor to capture.")


def tokens_to_rows(h: torch.Tensor, tokens: str = "all", *, mask: torch.Tensor | None = None,
                   skip: int = 0) -> torch.Tensor:
    """Turn one module output into activation rows (see the module docstring's table).

    Args:
        h: (B, D), (B, T, D) or (B, C, H, W).
        tokens: ``all`` | ``mean`` | ``last`` | ``first``.
        mask: (B, T) attention mask (1 = real token) for sequence outputs; all valid if None.
        skip: leading sequence positions to leave out of ``all`` and ``mean`` (prefix tokens of a
            ViT; the first position of an LM, whose hidden state is an attention-sink outlier).

    Returns:
        (n, D) rows (C-dim rows for image feature maps).
    """
    if tokens not in TOKEN_CHOICES:
        raise ConfigError(f"tokens={tokens!r} is not one of {list(TOKEN_CHOICES)}.")
    if h.ndim == 2:
        return h
    if h.ndim == 4:
        if tokens == "all":
            return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        if tokens == "mean":
            return h.mean(dim=(2, 3))
        raise ConfigError(f"tokens={tokens!r} has no meaning for a (B, C, H, W) feature map; use 'all' or 'mean'.")
    if h.ndim != 3:
        raise ValueError(f"cannot turn a module output of shape {tuple(h.shape)} into activation rows.")
    valid = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device) if mask is None else mask.to(h.device).bool()
    if tokens == "first":
        return h[:, 0]
    if tokens == "last":
        # Index of the last real token per row, for right or left padding alike.
        positions = torch.arange(h.shape[1], device=h.device).expand_as(valid)
        last = torch.where(valid, positions, -1).max(dim=1).values.clamp_min(0)
        return h[torch.arange(h.shape[0], device=h.device), last]
    kept = valid.clone()
    kept[:, :skip] = False
    if tokens == "all":
        return h[kept]
    counts = kept.sum(1, keepdim=True).clamp_min(1)
    return (h * kept[..., None]).sum(1) / counts


@torch.no_grad()
def capture_activations(model: nn.Module, layer: str, batches: Iterable[Any], *,
                        run: Callable[[nn.Module, Any], Any],
                        to_rows: Callable[[torch.Tensor, Any], torch.Tensor],
                        max_samples: int, on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Stream the output of ``model``'s module ``layer`` into a buffer of ``max_samples`` rows.

    Args:
        batches: anything ``run(model, batch)`` accepts, one at a time.
        run: performs the forward pass of one batch (its return value is ignored).
        to_rows: (module output tensor, batch) -> (n, D) rows.
        on_batch: called with the number of rows stored so far after each batch.

    Returns:
        (n, D) float32 activations on the CPU, n ≤ max_samples. The model's train/eval mode and
        hooks are restored on exit.
    """
    module = find_module(model, layer)
    buffer = ActivationBuffer(max_samples)
    current: dict[str, Any] = {}

    def hook(_module, _inputs, output):
        buffer.add(to_rows(_output_tensor(output), current["batch"]))
        if buffer.full:
            raise _BufferFull

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        for batch in batches:
            current["batch"] = batch
            try:
                run(model, batch)
            except _BufferFull:
                pass
            if on_batch is not None:
                on_batch(len(buffer))
            if buffer.full:
                break
    finally:
        handle.remove()
        model.train(was_training)
    rows = buffer.tensor()
    if rows.shape[0] == 0:
        raise DataError(f"Layer {layer!r} produced no activation rows; check --data and --tokens.")
    if not torch.isfinite(rows).all():
        raise DataError(f"Layer {layer!r} produced non-finite activations; check the model and its input scaling.")
    return rows.clone()


def _image_batches(dataset, batch_size: int, mean, std) -> Iterator[torch.Tensor]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         generator=torch.Generator().manual_seed(0))
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) if mean is not None else None
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) if std is not None else None
    for batch in loader:
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        if mean_t is not None:
            images = (images - mean_t) / std_t
        yield images


def capture_image_activations(model: nn.Module, layer: str, dataset, *, tokens: str = "all", skip: int | None = None,
                              batch_size: int = 64, max_samples: int = 20000, mean=None, std=None,
                              on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Activations of an image model (sslkit ViT from ``sslkit.load_backbone``, any timm model, any
    module taking (B, C, H, W)) over a dataset of the sslkit item protocol (``item["image"]``).

    Images are normalised with ``mean``/``std``, defaulting to the backbone's own
    (``model.meta`` of an sslkit backbone, ``pretrained_cfg`` of a timm model). ``skip`` defaults
    to the model's prefix tokens (``num_prefix_tokens``), so ``tokens="all"`` keeps patch tokens.
    """
    meta = getattr(model, "meta", None) or {}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = mean if mean is not None else meta.get("mean", cfg.get("mean"))
    std = std if std is not None else meta.get("std", cfg.get("std"))
    if skip is None:
        skip = int(getattr(model, "num_prefix_tokens", 0) or 0)
    return capture_activations(
        model, layer, _image_batches(dataset, batch_size, mean, std),
        run=lambda m, images: m(images),
        to_rows=lambda h, _batch: tokens_to_rows(h, tokens, skip=skip),
        max_samples=max_samples, on_batch=on_batch)


def capture_lm_activations(model: nn.Module, tokenizer, layer: str, texts: Iterable[str], *, tokens: str = "all",
                           skip: int = 1, max_length: int = 128, batch_size: int = 16, max_samples: int = 20000,
                           on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Hidden states of a Hugging Face causal LM at module ``layer`` (e.g. ``model.layers.15``).

    Texts are tokenised in batches (truncated to ``max_length``, right-padded); padding never
    becomes a row. ``tokens="last"`` takes the last real token of each text (the SplInterp LLM
    setting); ``"all"`` every token after the first ``skip``.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def batches() -> Iterator[dict]:
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == batch_size:
                yield tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
                chunk = []
        if chunk:
            yield tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)

    device = next(model.parameters()).device
    return capture_activations(
        model, layer, batches(),
        run=lambda m, enc: m(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                             use_cache=False),
        to_rows=lambda h, enc: tokens_to_rows(h, tokens, mask=enc["attention_mask"], skip=skip),
        max_samples=max_samples, on_batch=on_batch)


def text_corpus(source: str = "pydoc", min_chars: int = 40) -> list[str]:
    """Texts for LM activations, offline.

    ``"pydoc"``: the paragraphs of the Python documentation topics shipped with the standard
    library (``pydoc_data.topics``, ~2000 paragraphs of English prose and code). Otherwise a path to
    a UTF-8 ``.txt`` file: paragraphs separated by blank lines. Paragraphs shorter than
    ``min_chars`` are dropped.
    """
    if source == "pydoc":
        from pydoc_data.topics import topics

        raw = "\n\n".join(topics[key] for key in sorted(topics))
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"Text source {source!r} is neither 'pydoc' nor an existing .txt file.")
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"Text file {path} is not UTF-8 text; convert it or pass 'pydoc'.") from None
    paragraphs = [" ".join(p.split()) for p in raw.replace("\r\n", "\n").split("\n\n")]
    texts = [p for p in paragraphs if len(p) >= min_chars]
    if not texts:
        raise DataError(f"Text source {source!r} has no paragraph of at least {min_chars} characters.")
    return texts


# ------------------------------------------------------------------------------- files

ACTIVATION_SUFFIXES = (".pt", ".pth", ".npy", ".safetensors")


def load_activations(path: str | os.PathLike, key: str = "activations") -> torch.Tensor:
    """Read an (N, D) activation matrix from .pt/.pth, .npy or .safetensors as float32.

    Nothing is unpickled: ``torch.load(weights_only=True)``, ``numpy.load(allow_pickle=False)``.
    A .safetensors file holds the tensor ``key`` or a single tensor. (N, T, D) is flattened to
    (N·T, D).

    Raises:
        FileNotFoundError: no such file.
        DataError: unknown suffix, unreadable file, no or ambiguous tensor, fewer than 2 dims,
            empty, or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Activation file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            value = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(value, dict):
                value = _pick_tensor({k: v for k, v in value.items() if isinstance(v, torch.Tensor)}, key, path)
        elif suffix == ".npy":
            import numpy as np

            value = torch.from_numpy(np.load(path, allow_pickle=False))
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            value = _pick_tensor(load_file(str(path)), key, path)
        else:
            raise DataError(f"Activation file {path} has suffix {suffix!r}; use one of {list(ACTIVATION_SUFFIXES)}.")
    except DataError:
        raise
    except Exception as err:  # any reader failure is a bad user file
        raise DataError(f"Activation file {path} could not be read ({_read_failure(err)}).") from None
    if not isinstance(value, torch.Tensor):
        raise DataError(f"Activation file {path} holds a {type(value).__name__}, not a tensor.")
    if value.ndim < 2:
        raise DataError(f"Activation file {path} holds shape {tuple(value.shape)}; expected (N, D) rows.")
    value = value.reshape(-1, value.shape[-1]).to(torch.float32)
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise DataError(f"Activation file {path} is empty (shape {tuple(value.shape)}).")
    if not torch.isfinite(value).all():
        raise DataError(f"Activation file {path} contains NaN or infinite values; clean it first.")
    return value


def _read_failure(err: Exception) -> str:
    """One line on why a reader failed; a refused pickle says so instead of torch's page of advice."""
    import pickle

    text = str(err).strip()
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text or "allow_pickle" in text:
        return "it holds pickled Python objects, which sslkit never unpickles; save a plain tensor or array"
    first = text.splitlines()[0] if text else ""
    first = first if len(first) <= 160 else first[:160].rsplit(" ", 1)[0] + " …"
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _pick_tensor(tensors: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key in tensors:
        return tensors[key]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise DataError(f"Activation file {path} holds {sorted(tensors)[:5]} but no tensor named {key!r}; "
                    f"save the matrix under {key!r}.")


def save_activations(path: str | os.PathLike, activations: torch.Tensor, metadata: dict[str, str] | None = None) -> Path:
    """Write (N, D) activations as ``.safetensors`` (tensor ``activations``), atomically."""
    return save_safetensors_atomic(path, {"activations": activations.detach().cpu()}, metadata)
