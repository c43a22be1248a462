"""The evaluation suite: run protocols on several models, then write ``report.json`` and ``report.html``.

:func:`evaluate` is the Python API behind ``sslkit evaluate``: for each model it extracts (or reads from the
cache) frozen features of the train and test splits, runs the chosen protocols and collects the results and
every setting that produced them. :func:`write_report` turns that into

* ``report.json`` — results, settings (k, T, LR grid, epochs, split, seed, pooling, image size, ...), provenance;
* ``report.html`` — one self-contained page (inline CSS, plots as embedded PNG) with the side-by-side table and
  the plots: accuracy vs k, the probe sweep, the singular-value spectrum (and few-shot accuracy vs shots);
* the plots as PNG files beside them.

Example::

    report = evaluate(["runs/tiny-shapes", "timm:resnet18"], "shapes")
    write_report(report, "runs/eval-shapes")
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from sslkit.config import ConfigError
from sslkit.data.errors import DataError
from sslkit.data.folder import read_bad_files
from sslkit.eval.fewshot import FewShotConfig, fewshot_protocol
from sslkit.eval.knn import KNNConfig, knn_protocol
from sslkit.eval.linear import LinearProbeConfig, linear_probe, stratified_split
from sslkit.eval.encoders import encoder_summary, load_encoder
from sslkit.eval.eval_data import EvalData, open_eval_data
from sslkit.eval.feature_cache import feature_set
from sslkit.eval.features_file import FeatureSet, is_features_file
from sslkit.eval.robustness import RobustnessConfig, corruption_errors, resolve_reference, robustness_of_model
from sslkit.eval.segmentation import SegmentationConfig, load_masks, segmentation_probe
from sslkit.figures import figure_png, subplots
from sslkit.functional.metrics import alpha_req, cka, cknna, mutual_knn, rankme
from sslkit.json_values import json_ready
from sslkit.atomic_files import write_bytes_atomic, write_json_atomic

__all__ = ["PROTOCOLS", "SUPERVISED", "DEFAULT_PROTOCOLS", "EvaluationSettings", "evaluate", "render_html",
           "summary_table", "write_report"]

PROTOCOLS = ("knn", "linear", "fewshot", "segmentation", "rankme", "alpha_req", "similarity", "robustness")
SUPERVISED = ("knn", "linear", "fewshot", "segmentation", "robustness")
DEFAULT_PROTOCOLS = ("knn", "linear", "rankme")


def check_device(device: str) -> None:
    """Refuse a device string torch cannot parse, or an accelerator this machine lacks, in one sentence."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"--device {device!r} is not a device torch knows ({err}); use cpu, cuda, cuda:1 or mps.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} asks for a CUDA GPU, but torch sees none here "
                              "(torch.cuda.is_available() is False); use --device cpu.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s) "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1}).")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: this machine has no Apple GPU; use --device cpu.")


@dataclass
class EvaluationSettings:
    """Everything that decides the numbers; all of it is written into the report.

    ``rankme_samples`` test rows (the spec's 25 600) feed RankMe and α-ReQ; ``similarity_samples`` test rows feed
    the cross-model metrics (CKA, mutual kNN with k = ``similarity_k``, CKNNA), which build (n, n) kernels.
    ``features_file_test_fraction`` splits a features file that holds one plain set (stratified, ``seed``).
    """

    protocols: tuple = DEFAULT_PROTOCOLS
    pooling: str = "cls"
    n_last_blocks: int = 1
    image_size: Optional[int] = None
    data_options: dict = field(default_factory=dict)
    batch_size: int = 128
    num_workers: int = 0
    device: str = "cpu"
    seed: int = 0
    cache_dir: Any = True
    knn: KNNConfig = field(default_factory=KNNConfig)
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    rankme_samples: int = 25_600
    rankme_eps: float = 1e-7
    similarity_samples: int = 2000
    similarity_k: int = 10
    features_file_test_fraction: float = 0.2

    def __post_init__(self) -> None:
        self.protocols = tuple(self.protocols)
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise ConfigError(f"Unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}.")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be 0 or more, got {self.num_workers}.")
        check_device(self.device)
        # One seed for everything random in the suite (validation split, episodes, segmentation head).
        self.linear.seed = self.fewshot.seed = self.segmentation.seed = self.seed

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["cache_dir"] = str(self.cache_dir) if self.cache_dir not in (True, False, None) else self.cache_dir
        return out


def _subsample(n: int, limit: int, seed: int) -> torch.Tensor:
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def _singular_spectrum(x: torch.Tensor) -> list:
    s = torch.linalg.svdvals(x.double())
    return (s / s.sum()).tolist() if s.sum() > 0 else s.tolist()


class _ModelFeatures:
    """Lazy train/test features of one model at one pooling, shared by the protocols."""

    def __init__(self, spec: Any, data: Optional[EvalData], settings: EvaluationSettings, progress: bool):
        self.spec, self.data, self.settings, self.progress = spec, data, settings, progress
        self.is_file = is_features_file(spec)
        self.encoder = None
        if not self.is_file:
            self.encoder = load_encoder(spec, in_chans=data.channels if data else None, device=settings.device)
        self._cache: dict = {}
        self.infos: dict = {}

    @property
    def label_free_split(self) -> str:
        """The split label-free metrics read: the test split, or every image of an unlabelled folder."""
        return "test" if self.is_file or "test" in self.data.splits else "train"

    @property
    def name(self) -> str:
        return Path(str(self.spec)).name if self.is_file else self.encoder.name

    def summary(self) -> dict:
        if self.is_file:
            return {"name": self.name, "kind": "features-file", "description": f"precomputed features {self.spec}"}
        return encoder_summary(self.encoder)

    def get(self, split: str, pooling: Optional[str] = None) -> FeatureSet:
        pooling = pooling or self.settings.pooling
        key = (split, pooling)
        if key not in self._cache:
            if self.is_file:
                self._cache[key] = self._from_file(split)
            else:
                s = self.settings
                self._cache[key] = feature_set(self.encoder, self.data, split, pooling, n_last_blocks=s.n_last_blocks,
                                               image_size=s.image_size, batch_size=s.batch_size,
                                               num_workers=s.num_workers, device=s.device, cache_dir=s.cache_dir,
                                               progress=self.progress, encoder=self.encoder)
            self.infos[f"{split}/{pooling}"] = self._cache[key].info
        return self._cache[key]

    def _from_file(self, split: str) -> FeatureSet:
        from sslkit.eval.feature_cache import feature_set as read
        from sslkit.eval.features_file import safetensors_keys

        keys = safetensors_keys(Path(self.spec))
        if any(k.endswith(".features") for k in keys):
            return read(self.spec, None, split)
        # One plain set: hold out a seeded, stratified test fraction (recorded in the report).
        full = read(self.spec, None, "all")
        y = full.labels
        if (y >= 0).all():
            train_idx, test_idx = stratified_split(y, self.settings.features_file_test_fraction, self.settings.seed)
        else:
            perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.settings.seed))
            n_test = int(round(len(y) * self.settings.features_file_test_fraction))
            test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
        idx = train_idx if split == "train" else test_idx
        info = dict(full.info, split=split, n=int(idx.numel()),
                    note=f"one plain set split {1 - self.settings.features_file_test_fraction:.0%}/"
                         f"{self.settings.features_file_test_fraction:.0%} train/test (seed {self.settings.seed})")
        return FeatureSet(full.features[idx], full.labels[idx], info)


def evaluate(models: Sequence[Any], data: Optional[str], settings: Optional[EvaluationSettings] = None,
             progress: bool = False, log: Callable[[str], None] = lambda message: None) -> dict:
    """Run ``settings.protocols`` for every model on ``data``; return the report as a JSON-ready dict.

    Args:
        models: specs accepted by :func:`sslkit.eval.models.load_encoder` or features files.
        data: a data source (``shapes``, ``digits``, folder, path list); may be None when all models are
            features files.
        settings: protocols and their settings (defaults: kNN + linear probe + RankMe).
        progress: show progress bars for feature extraction and the probe sweep.
        log: receives one line per finished step.

    Raises:
        ModelSpecError / DataError / ConfigError: a bad model, missing labels, too few samples, bad settings.
    """
    from sslkit import __version__

    settings = settings or EvaluationSettings()
    if not models:
        raise ConfigError("Pass at least one model to evaluate.")
    if "similarity" in settings.protocols and len(models) < 2:
        raise ConfigError("The 'similarity' protocol compares models; pass at least two.")
    if "robustness" in settings.protocols:
        # Checked now, not after every corruption pass: the names a user can type are the specs as
        # given and the run directories' names.
        specs = [str(m) for m in models]
        resolve_reference(settings.robustness.reference, specs, [Path(s.rstrip("/")).name for s in specs])
    started = time.perf_counter()
    all_files = all(is_features_file(m) for m in models)
    opened: Optional[EvalData] = None
    if data is None and not all_files:
        raise ConfigError("Pass --data: only features files can be evaluated without a dataset.")
    bad_files_log = None
    if data is not None and not all_files:
        if settings.data_options.get("skip_bad_files"):
            # Skipped images are listed in report.json; the log lives beside the process until then.
            bad_files_log = Path(tempfile.mkdtemp(prefix="sslkit-evaluate-")) / "bad_files.txt"
            settings = dataclasses.replace(settings, data_options={**settings.data_options,
                                                                   "bad_files_log": str(bad_files_log)})
        opened = open_eval_data(data, settings.image_size, settings.data_options)
        supervised = [p for p in settings.protocols if p in SUPERVISED]
        if supervised and opened.num_classes is None:
            raise DataError(f"Protocol(s) {supervised} need labels, but data '{data}' is unlabelled (no class "
                            "sub-folders or 'label' column); add labels or run only label-free protocols "
                            "(--protocols rankme,alpha_req).")
        n_train = len(opened.splits["train"])
        if "knn" in settings.protocols and n_train < max(settings.knn.ks) and settings.knn.ks == KNNConfig().ks:
            # The default neighbour counts are DINO's, made for ImageNet; a small set keeps those it can serve.
            kept = tuple(k for k in settings.knn.ks if k <= n_train)
            if kept:
                log(f"kNN: k = {', '.join(str(k) for k in settings.knn.ks if k > n_train)} left out: the training "
                    f"split has {n_train} images")
                settings = dataclasses.replace(settings, knn=dataclasses.replace(settings.knn, ks=kept))
        if "knn" in settings.protocols and n_train < max(settings.knn.ks):
            # Checked before any feature is extracted, so the mistake costs no network pass.
            raise DataError(f"kNN with k={max(settings.knn.ks)} needs at least {max(settings.knn.ks)} training "
                            f"samples, but the training split of '{data}' has {n_train}; choose smaller k "
                            "(e.g. --knn-k 10,20).")
        if "robustness" in settings.protocols and "test" not in opened.splits:
            raise DataError(f"The robustness protocol needs a labelled test split, but data '{data}' has none.")
        if "robustness" in settings.protocols and n_train < settings.robustness.k:
            raise DataError(f"Robustness kNN with k={settings.robustness.k} needs at least that many training "
                            f"samples, but '{data}' has {n_train}; lower the robustness k.")
        if "segmentation" in settings.protocols:
            probe_item = opened.splits["train"][0]
            if "mask" not in probe_item:
                raise DataError(f"The segmentation protocol needs per-pixel masks, but data '{data}' has none; "
                                "use the built-in 'shapes' (foreground masks) or drop 'segmentation'.")
    report: dict = {
        "sslkit_version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": _data_summary(opened, data),
        "protocols": list(settings.protocols),
        # Where skipped files were logged is not a setting of the evaluation (a temporary path).
        "settings": dataclasses.replace(settings, data_options={k: v for k, v in settings.data_options.items()
                                                                if k != "bad_files_log"}).to_dict(),
        "models": [],
    }
    holders = []
    for spec in models:
        holder = _ModelFeatures(spec, opened, settings, progress)
        holders.append(holder)
        entry = {"spec": str(spec) if isinstance(spec, (str, os.PathLike)) else repr(spec), "name": holder.name,
                 "model": holder.summary(), "results": {}}
        report["models"].append(entry)
        log(f"{holder.name}: {entry['model'].get('description', '')}")
        results = entry["results"]
        for protocol in settings.protocols:
            if protocol == "similarity":
                continue
            results[protocol] = _run_protocol(protocol, holder, settings, opened)
            log(f"{holder.name}: {protocol} done")
        entry["features"] = holder.infos
    names = [e["name"] for e in report["models"]]
    if len(set(names)) < len(names):  # two runs with the same directory name: tell them apart
        for i, e in enumerate(report["models"]):
            e["name"] = f"{e['name']} [{i + 1}]"
    if "similarity" in settings.protocols:
        report["similarity"] = _similarity(holders, [e["name"] for e in report["models"]], settings)
    if "robustness" in settings.protocols:
        ref = resolve_reference(settings.robustness.reference, [e["spec"] for e in report["models"]],
                                [e["name"] for e in report["models"]])
        reference = report["models"][ref]["results"]["robustness"]
        for e in report["models"]:
            e["results"]["robustness"].update(corruption_errors(e["results"]["robustness"], reference),
                                              reference=report["models"][ref]["name"])
    if bad_files_log is not None:
        report["bad_files"] = read_bad_files(bad_files_log)
        if report["bad_files"]:
            log(f"skipped {len(report['bad_files'])} unreadable image(s), listed in report.json 'bad_files' "
                f"(first: {report['bad_files'][0]})")
        shutil.rmtree(bad_files_log.parent, ignore_errors=True)
    report["table"] = summary_table(report)
    report["seconds"] = time.perf_counter() - started
    return report


def _data_summary(opened: Optional[EvalData], data: Optional[str]) -> dict:
    if opened is None:
        return {"source": data, "note": "features files only"}
    return {"source": opened.source, "splits": {k: len(v) for k, v in opened.splits.items()},
            "channels": opened.channels, "num_classes": opened.num_classes, "class_names": opened.class_names,
            "image_size": opened.image_size, "mean": list(opened.mean), "std": list(opened.std),
            "options": {k: v for k, v in opened.options.items() if k != "bad_files_log"},
            "split_rule": "built-in fixed train/test split" if opened.builtin
            else "labelled folder: seeded 90/10 hold-out (seed 0) as in sslkit pretrain; unlabelled: all images"}


def _run_protocol(protocol: str, holder: _ModelFeatures, settings: EvaluationSettings,
                  data: Optional[EvalData]) -> dict:
    if protocol in ("rankme", "alpha_req"):
        test = holder.get(holder.label_free_split)
        idx = _subsample(test.features.shape[0], settings.rankme_samples, settings.seed)
        x = test.features[idx]
        if x.ndim != 2:
            raise DataError(f"{protocol} needs pooled features (n, D); use pooling cls, mean or cls+mean.")
        if protocol == "rankme":
            return {"rankme": rankme(x, eps=settings.rankme_eps), "dim": int(x.shape[1]), "samples": int(x.shape[0]),
                    "max_rank": int(min(x.shape)), "spectrum": _singular_spectrum(x)[:512]}
        return {"alpha_req": alpha_req(x), "samples": int(x.shape[0])}
    if protocol == "segmentation":
        return _segmentation(holder, settings, data)
    if protocol == "robustness":
        if holder.is_file or data is None:
            raise DataError("The robustness protocol corrupts images; it cannot run on a features file.")
        s = settings
        return robustness_of_model(holder.encoder, data, s.robustness, pooling=s.pooling,
                                   n_last_blocks=s.n_last_blocks, image_size=s.image_size, batch_size=s.batch_size,
                                   num_workers=s.num_workers, device=s.device, cache_dir=s.cache_dir,
                                   knn_temperature=s.knn.temperature, progress=holder.progress,
                                   train_features=holder.get("train"), linear_config=s.linear)
    train, test = holder.get("train"), holder.get("test")
    if protocol == "knn":
        return knn_protocol(train.features, train.labels, test.features, test.labels, settings.knn).to_dict()
    if protocol == "linear":
        return linear_probe(train.features, train.labels, test.features, test.labels, settings.linear,
                            progress=holder.progress).to_dict()
    if protocol == "fewshot":
        return fewshot_protocol(train.features, train.labels, test.features, test.labels, settings.fewshot).to_dict()
    raise ConfigError(f"Unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}.")  # pragma: no cover


def _segmentation(holder: _ModelFeatures, settings: EvaluationSettings, data: Optional[EvalData]) -> dict:
    if holder.is_file or data is None:
        raise DataError("The segmentation protocol needs images and masks; it cannot run on a features file.")
    train, test = holder.get("train", "patch"), holder.get("test", "patch")
    size = train.info["image_size"]
    train_masks = load_masks(data.splits["train"], size)
    test_masks = load_masks(data.splits["test"], size)
    result = segmentation_probe(train.features, train_masks, test.features, test_masks, num_classes=2,
                                config=settings.segmentation)
    out = result.to_dict()
    out["classes"] = ["background", "foreground"]
    return out


def _similarity(holders: list, names: list, settings: EvaluationSettings) -> dict:
    feats = [h.get(h.label_free_split).features for h in holders]
    n = min(f.shape[0] for f in feats)
    if any(f.shape[0] != n for f in feats):
        raise DataError("The similarity protocol needs the same test samples for every model; the feature sets "
                        "have different sizes.")
    idx = _subsample(n, settings.similarity_samples, settings.seed)
    feats = [f[idx].double() for f in feats]
    k = settings.similarity_k
    if idx.numel() <= k + 1:
        raise DataError(f"The similarity protocol needs more than {k + 1} test samples, got {idx.numel()}.")
    metrics = {"cka_linear": lambda a, b: cka(a, b), "cka_rbf": lambda a, b: cka(a, b, kernel="rbf"),
               "cka_linear_unbiased": lambda a, b: cka(a, b, unbiased=True),
               "mutual_knn": lambda a, b: mutual_knn(a, b, k=k), "cknna": lambda a, b: cknna(a, b, k=k)}
    out = {"names": names, "samples": int(idx.numel()), "k": k, "random_mutual_knn": k / (idx.numel() - 1)}
    for metric, fn in metrics.items():
        matrix = [[1.0 if i == j else None for j in range(len(feats))] for i in range(len(feats))]
        for i in range(len(feats)):
            for j in range(i + 1, len(feats)):
                matrix[i][j] = matrix[j][i] = fn(feats[i], feats[j])
        out[metric] = matrix
    return out


# --------------------------------------------------------------------------------------------- table


def _pct(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def summary_table(report: dict) -> dict:
    """Rows of the side-by-side table: {"columns": [model names], "rows": [{"metric", "values", "best"}]}.

    ``best`` says which direction is better ("max") or that no value is better than another (None).
    """
    models = report["models"]
    rows: list[dict] = []

    def add(metric: str, values: list, best: Optional[str] = "max", raw: Optional[list] = None) -> None:
        rows.append({"metric": metric, "values": values, "best": best, "raw": raw})

    def results(protocol: str) -> list:
        return [m["results"].get(protocol) for m in models]

    if "knn" in report["protocols"]:
        ks = report["settings"]["knn"]["ks"]
        for k in ks:
            raw = [r["accuracy"][str(k)] if r else None for r in results("knn")]
            add(f"kNN top-1 % (k={k}, T={report['settings']['knn']['temperature']})", [_pct(v) for v in raw], raw=raw)
    if "linear" in report["protocols"]:
        res = results("linear")
        raw = [r["test_accuracy"] if r else None for r in res]
        add("linear probe top-1 %", [_pct(v) for v in raw], raw=raw)
        raw_f1 = [r["macro_f1"] if r else None for r in res]
        add("linear probe macro-F1 %", [_pct(v) for v in raw_f1], raw=raw_f1)
        add("linear probe chosen lr / wd", [f"{r['best']['lr']:g} / {r['best']['weight_decay']:g}" if r else "–"
                                            for r in res], best=None)
    if "fewshot" in report["protocols"]:
        res = results("fewshot")
        for shots in report["settings"]["fewshot"]["shots"]:
            raw = [r["mean"][str(shots)] if r else None for r in res]
            add(f"{shots}-shot top-1 % (mean ± std)",
                [f"{100 * r['mean'][str(shots)]:.1f} ± {100 * r['std'][str(shots)]:.1f}" if r else "–" for r in res],
                raw=raw)
    if "segmentation" in report["protocols"]:
        raw = [r["miou"] if r else None for r in results("segmentation")]
        add("segmentation mIoU % (foreground/background)", [_pct(v) for v in raw], raw=raw)
    if "rankme" in report["protocols"]:
        res = results("rankme")
        add("RankMe (of max rank)", [f"{r['rankme']:.1f} / {r['max_rank']}" if r else "–" for r in res], best=None,
            raw=[r["rankme"] if r else None for r in res])
    if "alpha_req" in report["protocols"]:
        res = results("alpha_req")
        add("α-ReQ (spectral decay)", [f"{r['alpha_req']:.2f}" if r else "–" for r in res], best=None,
            raw=[r["alpha_req"] if r else None for r in res])
    if "robustness" in report["protocols"]:
        res = results("robustness")
        first = next(r for r in res if r)
        raw = [r["clean_accuracy"] if r else None for r in res]
        add(f"robustness: clean kNN top-1 % (k={first['k']}, {first['n_test']} test images)",
            [_pct(v) for v in raw], raw=raw)
        raw = [r["mean_corruption_accuracy"] if r else None for r in res]
        add(f"robustness: mean corruption accuracy % ({len(first['accuracy'])} corruptions × "
            f"{len(next(iter(first['accuracy'].values())))} severities)", [_pct(v) for v in raw], raw=raw)
        if "linear" in first:
            raw = [r["linear"]["clean_accuracy"] if r else None for r in res]
            add("robustness: clean linear-probe top-1 %", [_pct(v) for v in raw], raw=raw)
            raw = [r["linear"]["mean_corruption_accuracy"] if r else None for r in res]
            add("robustness: mean corruption accuracy %, linear probe", [_pct(v) for v in raw], raw=raw)
        for key, label in (("mce", "mCE"), ("relative_mce", "relative mCE")):
            raw = [r.get(key) if r else None for r in res]
            add(f"robustness: {label} % (vs {first.get('reference', 'the first model')}; lower is better)",
                [_pct(v) for v in raw], best="min", raw=raw)
    dims = []
    for m in models:
        info = next(iter(m.get("features", {}).values()), {})
        dims.append(str(info.get("dim", "–")))
    add("feature dimension", dims, best=None)
    return {"columns": [m["name"] for m in models], "rows": rows}


# --------------------------------------------------------------------------------------------- plots


def _figure_png(draw: Callable) -> bytes:
    with subplots(figsize=(5.6, 3.6), dpi=110) as (fig, ax):
        draw(ax)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        return figure_png(fig)


def _label_axes(ax, xlabel: str, ylabel: str, title: str, *, xscale: str = "linear", yscale: str = "linear",
                legend_size: float = 7) -> None:
    ax.set_xscale(xscale)
    ax.set_yscale(yscale)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)


def _plots(report: dict) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, PNG bytes) for the protocols that ran."""
    models = report["models"]
    plots: dict[str, tuple[str, bytes]] = {}
    if "robustness" in report["protocols"]:
        from sslkit.eval.robustness import robustness_heatmap_png

        plots["robustness_heatmap"] = ("kNN accuracy under each corruption and severity (ImageNet-C style)",
                                       robustness_heatmap_png([(m["name"], m["results"]["robustness"])
                                                               for m in models]))
    if "knn" in report["protocols"]:
        def knn_plot(ax):
            for m in models:
                acc = m["results"]["knn"]["accuracy"]
                ks = sorted(int(k) for k in acc)
                ax.plot(ks, [100 * acc[str(k)] for k in ks], marker="o", label=m["name"])
            _label_axes(ax, "k (neighbours)", "top-1 %", "kNN accuracy vs k", xscale="log")
        plots["knn_accuracy_vs_k"] = ("kNN top-1 accuracy against the number of neighbours k", _figure_png(knn_plot))
    if "linear" in report["protocols"]:
        def sweep_plot(ax):
            for m in models:
                r = m["results"]["linear"]
                wds = sorted({g["weight_decay"] for g in r["grid"]})
                for wd in wds:
                    pts = sorted((g["lr"], v) for g, v in zip(r["grid"], r["val_accuracy"]) if g["weight_decay"] == wd)
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=".",
                            label=f"{m['name']} wd={wd:g}")
                ax.scatter([r["best"]["lr"]], [100 * r["best"]["val_accuracy"]], marker="*", s=120, zorder=5)
            _label_axes(ax, "learning rate", "validation top-1 %", "linear-probe sweep (★ = selected head)",
                        xscale="log", legend_size=6)
        plots["linear_probe_sweep"] = ("Validation accuracy of every linear-probe head (one line per weight decay)",
                                       _figure_png(sweep_plot))
    if "rankme" in report["protocols"]:
        def spectrum_plot(ax):
            for m in models:
                r = m["results"]["rankme"]
                top = max(r["spectrum"], default=0.0)
                s = [v for v in r["spectrum"] if v > 1e-10 * top]  # below that it is round-off, not signal
                ax.plot(range(1, len(s) + 1), s, label=f"{m['name']} (RankMe {r['rankme']:.1f})")
            _label_axes(ax, "index", "σ_i / Σσ", "singular-value spectrum of the test features", xscale="log",
                        yscale="log")
        plots["singular_value_spectrum"] = ("Normalised singular values of the (uncentred) test features",
                                            _figure_png(spectrum_plot))
    if "fewshot" in report["protocols"]:
        def fewshot_plot(ax):
            for m in models:
                r = m["results"]["fewshot"]
                shots = sorted(int(s) for s in r["mean"])
                ax.errorbar(shots, [100 * r["mean"][str(s)] for s in shots], yerr=[100 * r["std"][str(s)] for s in shots],
                            marker="o", capsize=3, label=m["name"])
            _label_axes(ax, "shots per class", "top-1 % (mean ± std)", "few-shot accuracy")
        plots["fewshot_accuracy"] = ("Few-shot accuracy over episodes (error bars: standard deviation)",
                                     _figure_png(fewshot_plot))
    return plots


# --------------------------------------------------------------------------------------------- writing

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:right} th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3} td.best{font-weight:700;background:#eef7ee}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top} figcaption{font-size:.82rem;color:#555;max-width:600px}
pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.8rem;max-height:28rem}
"""

# Marks the best value of each row whose direction is known; plain DOM, no external code.
_SCRIPT = """
document.querySelectorAll('#summary tbody tr[data-best="max"]').forEach(function (row) {
  var cells = Array.prototype.slice.call(row.querySelectorAll('td[data-value]'));
  var values = cells.map(function (c) { return parseFloat(c.getAttribute('data-value')); });
  var finite = values.filter(function (v) { return isFinite(v); });
  if (finite.length < 2) { return; }
  var top = Math.max.apply(null, finite);
  cells.forEach(function (c, i) { if (values[i] === top) { c.classList.add('best'); } });
});
document.body.setAttribute('data-ready', '1');
"""


def render_html(report: dict, plots: dict[str, tuple[str, bytes]]) -> str:
    """The self-contained report page."""
    esc = html.escape
    table = report["table"]
    head = "".join(f"<th>{esc(c)}</th>" for c in table["columns"])
    body = []
    for row in table["rows"]:
        cells = []
        raw = row.get("raw") or [None] * len(row["values"])
        for text, value in zip(row["values"], raw):
            attr = f' data-value="{value:.10g}"' if isinstance(value, (int, float)) and value is not None else ""
            cells.append(f"<td{attr}>{esc(str(text))}</td>")
        best = f' data-best="{row["best"]}"' if row.get("best") else ""
        body.append(f"<tr{best}><td>{esc(row['metric'])}</td>{''.join(cells)}</tr>")
    figures = "".join(
        f'<figure id="plot-{esc(name)}"><img alt="{esc(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{esc(caption)}</figcaption></figure>'
        for name, (caption, png) in plots.items())
    models = "".join(f"<li><b>{esc(m['name'])}</b>: {esc(str(m['model'].get('description', '')))}</li>"
                     for m in report["models"])
    similarity = ""
    if "similarity" in report:
        sim = report["similarity"]
        parts = []
        for metric in ("cka_linear", "cka_rbf", "cka_linear_unbiased", "mutual_knn", "cknna"):
            header = "".join(f"<th>{esc(n)}</th>" for n in sim["names"])
            rows = "".join(
                f"<tr><td>{esc(sim['names'][i])}</td>"
                + "".join(f"<td>{v:.3f}</td>" for v in sim[metric][i]) + "</tr>"
                for i in range(len(sim["names"])))
            parts.append(f"<h3>{esc(metric)}</h3><table><thead><tr><th></th>{header}</tr></thead><tbody>{rows}</tbody></table>")
        similarity = (f"<h2>Cross-model similarity</h2><p class='meta'>{sim['samples']} test samples; k = {sim['k']}; "
                      f"random mutual-kNN baseline ≈ {sim['random_mutual_knn']:.3f}</p>" + "".join(parts))
    settings = json.dumps(report["settings"], indent=2)
    data = json.dumps(report["data"], indent=2)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sslkit evaluation — {esc(str(report['data'].get('source')))}</title><link rel="icon" href="data:,">
<style>{_CSS}</style></head>
<body>
<h1>sslkit evaluation</h1>
<p class="meta">data <b>{esc(str(report['data'].get('source')))}</b> · protocols {esc(', '.join(report['protocols']))} ·
sslkit {esc(report['sslkit_version'])} · {esc(report['created'])} · {report.get('seconds', 0):.1f} s</p>
<h2>Results</h2>
<table id="summary"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>Models</h2><ul>{models}</ul>
<h2>Plots</h2>{figures or '<p>No plots for these protocols.</p>'}
{similarity}
<h2>Settings (every default used)</h2><pre id="settings">{esc(settings)}</pre>
<h2>Data</h2><pre>{esc(data)}</pre>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(report: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.html`` and one PNG per plot into ``out`` (atomically); return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(report)
    paths = {}
    for name, (_, png) in plots.items():
        paths[name] = out / f"{name}.png"
        write_bytes_atomic(paths[name], png)
    report = dict(report, plots=[f"{name}.png" for name in plots])
    paths["json"] = out / "report.json"
    write_json_atomic(paths["json"], json_ready(report))
    paths["html"] = out / "report.html"
    write_bytes_atomic(paths["html"], render_html(report, plots).encode())
    return paths
