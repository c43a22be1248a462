"""LoRA fine-tuning of any Hugging Face model (or any torch module) for sequence classification.

Follows the SSTI reference setup (arXiv 2506.11402; spec ``specs/ssti.md`` step 3, and
rbalestr-lab/LLM-research ``examples/supervised_finetuning.py`` where the spec is silent):

- LoRA (peft) of rank r, alpha = r, dropout 0.05 on the attention projections, chosen per
  architecture (:data:`DEFAULT_LORA_TARGETS`) and overridable;
- head: one linear layer on ``concat(mean over non-pad tokens, last non-pad token)`` of the last
  hidden state, ``(B, T, H) -> (B, 2H) -> (B, C)``;
- **only the LoRA parameters train** by default (the head stays at its seeded random
  initialisation, as in the reference); ``train_head=True`` trains it too;
- Adafactor (lr 1e-4, weight decay 1e-5, no relative step / parameter scaling, as the HF Trainer
  sets it up), cosine schedule with 5 % linear warm-up, gradient-norm clip 1.

Example::

    from sslkit.llm.lora import LoraSettings, finetune_lora_classifier
    clf = finetune_lora_classifier("minilm", texts, labels, LoraSettings(rank=4, steps=100))
    clf.predict(["a fine film"])         # -> array([1])
    clf.predict_proba(test_texts)        # -> (N, C) float array

``model_spec`` is ``"minilm"`` (the bundled all-MiniLM-L6-v2), ``"smollm2"`` (the bundled
SmolLM2-135M; its decoder is used), a local Hugging Face model directory, or a ready
``(model, tokenizer)`` pair. Nothing reaches a hub.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from sslkit.config import ConfigError
from sslkit.training_loop import TrainingLoop

__all__ = ["DEFAULT_LORA_TARGETS", "FALLBACK_LORA_TARGETS", "LoraTargetError", "LoraSettings",
           "PooledClassifier", "LoraClassifier", "load_text_backbone", "resolve_lora_targets",
           "add_lora", "lora_parameter_names", "finetune_lora_classifier", "cosine_warmup_lambda"]

# model_type -> attention projections. The spec names OpenELM's and the q/k/v/dense family;
# the others follow the same rule (every attention input and output projection).
DEFAULT_LORA_TARGETS: dict[str, list[str]] = {
    "openelm": ["qkv_proj", "out_proj"],
    "bert": ["query", "key", "value", "attention.output.dense"],
    "roberta": ["query", "key", "value", "attention.output.dense"],
    "xlm-roberta": ["query", "key", "value", "attention.output.dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "gpt2": ["c_attn", "attn.c_proj"],
    "vit_timm": ["qkv", "attn.proj"],  # timm / sslkit ViT: the fused qkv Linear and the output projection
}
FALLBACK_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "dense"]


class LoraTargetError(ConfigError):
    """The requested LoRA target modules do not exist in the model."""


@dataclass
class LoraSettings:
    """Fine-tuning settings. Defaults are the spec's except ``steps``/``batch_size``/``max_len``,
    which the spec sets for a GPU (500 steps, batch 128, 1024 tokens) and are CPU-sized here."""

    rank: int = 4
    alpha: float | None = None          # None -> alpha = rank (the paper's choice)
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None -> per architecture
    train_head: bool = False
    steps: int = 100
    batch_size: int = 16
    grad_accum: int = 1                 # effective batch = batch_size * grad_accum
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup_frac: float = 0.05
    optimizer: str = "adafactor"        # or "adamw"
    grad_clip: float = 1.0
    max_len: int = 64
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be a positive integer, got {self.rank!r}.")
        if self.optimizer not in ("adafactor", "adamw"):
            raise ConfigError(f"Unknown optimizer {self.optimizer!r}; choose 'adafactor' or 'adamw'.")
        for name in ("steps", "batch_size", "grad_accum", "max_len"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"LoraSettings.{name} must be >= 1, got {getattr(self, name)!r}.")

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)


# --------------------------------------------------------------------------- models


def load_text_backbone(model_spec: Any) -> tuple[nn.Module, Any]:
    """``(encoder, tokenizer)`` whose ``encoder(input_ids=, attention_mask=)`` returns an object with
    ``last_hidden_state (B, T, H)``. Causal LMs are reduced to their decoder (no LM head)."""
    if isinstance(model_spec, (tuple, list)) and len(model_spec) == 2:
        model, tokenizer = model_spec
    elif model_spec == "minilm":
        from sslkit.llm.models import load_minilm

        model, tokenizer = load_minilm()
    elif model_spec == "smollm2":
        from sslkit.llm.models import load_smollm2

        model, tokenizer = load_smollm2()
    else:
        path = Path(str(model_spec))
        if not path.is_dir():
            raise ConfigError(f"Model {model_spec!r} is neither 'minilm', 'smollm2' nor a local Hugging Face "
                              f"model directory; pass one of those.")
        from sslkit.llm.models import _force_offline, check_hf_config, read_hf_config, refuse_remote_code

        _force_offline()
        from transformers import AutoModel, AutoTokenizer

        # A user directory: never run code it ships (auto_map), and refuse absurd sizes before building.
        with refuse_remote_code(path, ConfigError):
            config = read_hf_config(path, True, ConfigError)
            check_hf_config(config, path, ConfigError)
            model = AutoModel.from_pretrained(str(path), config=config, dtype=torch.float32, local_files_only=True,
                                              trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    base = getattr(model, "base_model", model)  # LlamaForCausalLM -> LlamaModel; BertModel -> itself
    if tokenizer.pad_token is None:  # decoder tokenizers often ship without one; the mask ignores it anyway
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # the pooling below finds the last token from the mask
    return base, tokenizer


def _model_type(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None and any(name.endswith("attn.qkv") for name, _ in model.named_modules()):
        return "vit_timm"
    return model_type


def _linear_patterns(model: nn.Module) -> list[str]:
    """Distinct Linear-layer names with block indices collapsed (``encoder.layer.*.attention.self.query``)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return list(dict.fromkeys(re.sub(r"\.\d+\.", ".*.", n) for n in names))


def _matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def resolve_lora_targets(model: nn.Module, targets: Sequence[str] | None = None) -> list[str]:
    """The LoRA target names for ``model``: ``targets`` if given, else per architecture.

    Raises:
        LoraTargetError: a target matches no Linear layer; the message lists the model's Linear names.
    """
    if targets is None:
        targets = DEFAULT_LORA_TARGETS.get(_model_type(model) or "", FALLBACK_LORA_TARGETS)
    targets = [t for t in targets if t]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    missing = [t for t in targets if not any(_matches(n, t) for n in linear)]
    if missing or not targets:
        raise LoraTargetError(
            f"LoRA target module(s) {missing or targets} match no Linear layer of this "
            f"{_model_type(model) or type(model).__name__} model; pass --lora-targets with names from its "
            f"Linear layers: {', '.join(_linear_patterns(model))}.")
    return list(targets)


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.05,
             targets: Sequence[str] | None = None) -> list[str]:
    """Insert LoRA adapters (peft) into ``model`` in place and freeze every non-LoRA parameter.

    Works on any torch module, including timm/sslkit ViTs whose fused ``qkv`` Linear gets one
    adapter of output size 3D (A: (r, D), B: (3D, r)). Returns the resolved target names."""
    from peft import LoraConfig, inject_adapter_in_model

    resolved = resolve_lora_targets(model, targets)
    config = LoraConfig(r=rank, lora_alpha=float(rank if alpha is None else alpha), lora_dropout=dropout,
                        target_modules=resolved, bias="none")
    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return resolved


def lora_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if "lora_" in n]


class PooledClassifier(nn.Module):
    """Encoder + linear head on ``concat(masked mean, last non-pad token)``: (B, T) ids -> (B, C) logits."""

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        last_index = attention_mask.long().sum(1).clamp_min(1) - 1  # right padding
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index]
        return self.head(torch.cat([mean, last], dim=-1))


def cosine_warmup_lambda(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``ceil(warmup_frac * total)`` steps, then cosine to 0."""
    warmup = max(1, math.ceil(warmup_frac * total_steps)) if warmup_frac > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class LoraClassifier:
    """A fitted LoRA classifier. ``predict(texts) -> (N,) int``, ``predict_proba(texts) -> (N, C)``."""

    model: PooledClassifier
    tokenizer: Any
    num_classes: int
    settings: LoraSettings
    targets: list[str]
    losses: list[float] = field(default_factory=list)
    trainable_parameters: int = 0
    lora_parameters: int = 0

    def _encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.settings.max_len,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    @torch.no_grad()
    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.model.eval()
        chunks = [self.model(**self._encode(texts[i:i + batch_size])).float().numpy()
                  for i in range(0, len(texts), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes), np.float32)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        z = self.logits(list(texts), batch_size)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.logits(list(texts), batch_size).argmax(axis=1)

    def settings_dict(self) -> dict[str, Any]:
        return {**asdict(self.settings), "targets": self.targets, "lora_alpha": self.settings.lora_alpha}


def _optimizer(params: list[nn.Parameter], settings: LoraSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    from transformers.optimization import Adafactor

    # As the HF Trainer builds it for optim="adafactor": a fixed external lr, no parameter scaling
    # (LoRA B starts at zero, so RMS-relative steps would never move it).
    return Adafactor(params, lr=settings.lr, weight_decay=settings.weight_decay, scale_parameter=False,
                     relative_step=False, warmup_init=False)


def finetune_lora_classifier(model_spec: Any, train_texts: Sequence[str], train_labels: Sequence[int],
                             settings: LoraSettings | None = None, num_classes: int | None = None,
                             **overrides: Any) -> LoraClassifier:
    """Fine-tune LoRA adapters (and optionally the head) of ``model_spec`` on labelled texts.

    Args:
        model_spec: "minilm", "smollm2", a local HF model directory, or a ``(model, tokenizer)`` pair
            (the model is modified in place: adapters are injected into it).
        train_texts, train_labels: N texts and integer labels in 0..C-1.
        settings: :class:`LoraSettings`; keyword ``overrides`` replace its fields (``rank=16``).
        num_classes: C (default ``max(label) + 1``).

    Returns:
        A :class:`LoraClassifier` (``predict``, ``predict_proba``, ``losses`` per optimiser step).

    Raises:
        LoraTargetError: the LoRA targets match no layer (the message lists the model's layers).
        ConfigError: bad settings, empty data, or a non-finite loss.
    """
    settings = settings or LoraSettings()
    if overrides:
        settings = LoraSettings(**{**asdict(settings), **overrides})
    labels = [int(y) for y in train_labels]
    if len(train_texts) != len(labels) or not labels:
        raise ConfigError(f"finetune_lora_classifier needs as many labels as texts and at least one sample; "
                          f"got {len(train_texts)} texts and {len(labels)} labels.")
    num_classes = int(num_classes or max(labels) + 1)
    if min(labels) < 0 or max(labels) >= num_classes:
        raise ConfigError(f"Labels must be integers in 0..{num_classes - 1}; got range {min(labels)}..{max(labels)}.")

    # The global RNG (LoRA and head init, dropout) and the batch order are both seeded with settings.seed.
    with TrainingLoop(f"LoRA r={settings.rank}", steps=settings.steps, seed=settings.seed, progress=settings.progress,
                      hint=f"lower the learning rate (now {settings.lr})", error=ConfigError) as loop:
        encoder, tokenizer = load_text_backbone(model_spec)
        targets = add_lora(encoder, settings.rank, settings.lora_alpha, settings.dropout, settings.target_modules)
        hidden = int(getattr(getattr(encoder, "config", None), "hidden_size", 0) or
                     encoder.get_input_embeddings().embedding_dim)
        generator = loop.generator
        model = PooledClassifier(encoder, hidden, num_classes)
        with torch.no_grad():  # seeded head init independent of anything drawn before
            bound = 1.0 / math.sqrt(2 * hidden)
            model.head.weight.copy_(torch.empty_like(model.head.weight).uniform_(-bound, bound, generator=generator))
            model.head.bias.copy_(torch.empty_like(model.head.bias).uniform_(-bound, bound, generator=generator))
        model.head.requires_grad_(settings.train_head)
        trainable = [p for p in model.parameters() if p.requires_grad]
        n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
        n_trainable = sum(p.numel() for p in trainable)
        if not settings.train_head and n_trainable != n_lora:  # the reference's own sanity check
            raise RuntimeError(f"Only LoRA parameters should train, but {n_trainable} != {n_lora} LoRA parameters.")

        encoded = tokenizer(list(train_texts), truncation=True, max_length=settings.max_len)["input_ids"]
        pad_id = tokenizer.pad_token_id
        targets_t = torch.tensor(labels)
        optimizer = _optimizer(trainable, settings)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_warmup_lambda(settings.steps, settings.warmup_frac))
        order: list[int] = []
        losses: list[float] = []

        def next_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
            nonlocal order
            if len(order) < settings.batch_size:  # reshuffle each epoch under the seed
                order = order + torch.randperm(len(labels), generator=generator).tolist()
            idx, order = order[:settings.batch_size], order[settings.batch_size:]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, :len(encoded[i])] = 1
            return {"input_ids": ids, "attention_mask": mask}, targets_t[idx]

        model.train()
        for step in range(settings.steps):
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(settings.grad_accum):
                batch, y = next_batch()
                loss = nn.functional.cross_entropy(model(**batch), y) / settings.grad_accum
                loss.backward()
                total += float(loss.detach())
            loop.check(total, f"step {step}")
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(total)
            loop.advance(total)
    model.eval()
    return LoraClassifier(model, tokenizer, num_classes, settings, targets, losses, n_trainable, n_lora)

