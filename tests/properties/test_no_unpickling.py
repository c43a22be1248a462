"""No code path unpickles a user file (issue 23, item 6).

Every loader of a user file in sslkit gets a file whose unpickling would create a marker file, through its
public API; it must refuse with its usual one-sentence error and the marker must not exist. The rows run
twice, the second time with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (which turns a ``torch.load`` that does
not say ``weights_only=True`` back into a full unpickle). A static scan of ``src/sslkit`` then holds every
``torch.load`` to ``weights_only=True``, every ``np.load`` to ``allow_pickle=False``, and pickle / unsafe
YAML readers to the one allow-listed place.
"""

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sslkit.analysis.activations import load_activations
from sslkit.analysis.denoise import DENOISER_WEIGHTS, load_denoiser, save_denoiser
from sslkit.config import TrainerConfig
from sslkit.data.errors import DataError
from sslkit.engine.checkpoints import AtomicCheckpointIO, readable_checkpoint
from sslkit.engine.strategy import build_strategy
from sslkit.eval.models import ModelSpecError, load_encoder
from sslkit.nn.export import WEIGHTS_NAME, load_backbone, save_backbone
from sslkit.nn.sae import SAE_WEIGHTS, TopKSAE, load_sae, save_sae
from sslkit.nn.unet import UNet, UNetConfig
from sslkit.nn.vit import ViT, ViTConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "sslkit"


class _RunsCode:
    """Unpickling this object calls ``Path(marker).touch()``: the stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# --------------------------------------------------------------------------- the evil files

def _torch_file(path, marker):
    torch.save({"global_step": 3, "state_dict": {"w": torch.zeros(2)}, "payload": _RunsCode(marker)}, path)
    return path


def _pickle_file(path, marker):
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    return path


def _npy_file(path, marker):
    np.save(path, np.array([_RunsCode(marker)], dtype=object), allow_pickle=True)
    return path


def _backbone_dir(tmp_path, marker):
    save_backbone(ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2)),
                  tmp_path / "run", mean=[0.5], std=[0.25])
    _torch_file(tmp_path / "run" / WEIGHTS_NAME, marker)
    return tmp_path / "run"


def _sae_dir(tmp_path, marker):
    save_sae(TopKSAE(6, 16, 3), tmp_path / "sae")
    _torch_file(tmp_path / "sae" / SAE_WEIGHTS, marker)
    return tmp_path / "sae"


def _denoiser_dir(tmp_path, marker):
    save_denoiser(UNet(UNetConfig(channels=1, width=4, depth=2)), tmp_path / "n2n")
    _torch_file(tmp_path / "n2n" / DENOISER_WEIGHTS, marker)
    return tmp_path / "n2n"


def _sharded_checkpoint_dir(tmp_path, marker):
    # torch.distributed.checkpoint's FileSystemReader.read_metadata is pickle.load(".metadata").
    directory = tmp_path / "last.ckpt"
    directory.mkdir()
    _pickle_file(directory / ".metadata", marker)
    return directory


def _fsdp_load(path):
    return build_strategy(TrainerConfig(strategy="fsdp")).load_checkpoint(path)


# --------------------------------------------------------------------------- one row per loader

ROWS = {
    # name: (write the file under tmp_path, load it, the refusal expected)
    "resume: readable_checkpoint(last.ckpt)": (
        lambda t, m: _torch_file(t / "last.ckpt", m) and t,
        lambda p: readable_checkpoint(p, log=lambda _: None), FileNotFoundError),
    "resume: Lightning's checkpoint IO (AtomicCheckpointIO)": (
        lambda t, m: _torch_file(t / "last.ckpt", m),
        lambda p: AtomicCheckpointIO().load_checkpoint(p, weights_only=False), ValueError),
    "resume: FSDP strategy, single-file checkpoint": (
        lambda t, m: _torch_file(t / "last.ckpt", m), _fsdp_load, ValueError),
    "resume: FSDP strategy, sharded checkpoint directory": (_sharded_checkpoint_dir, _fsdp_load, ValueError),
    "activations .pt": (lambda t, m: _torch_file(t / "acts.pt", m), load_activations, DataError),
    "activations .pth": (lambda t, m: _torch_file(t / "acts.pth", m), load_activations, DataError),
    "activations .npy (object array)": (lambda t, m: _npy_file(t / "acts.npy", m), load_activations, DataError),
    "activations .safetensors (a pickle)": (lambda t, m: _pickle_file(t / "acts.safetensors", m), load_activations,
                                            DataError),
    "backbone.safetensors (a torch pickle)": (_backbone_dir, load_backbone, ValueError),
    "sae.safetensors (a torch pickle)": (_sae_dir, load_sae, ValueError),
    "denoiser.safetensors (a torch pickle)": (_denoiser_dir, load_denoiser, DataError),
    "evaluate: run directory with pickled weights": (_backbone_dir, load_encoder, ModelSpecError),
    "evaluate: timm weights .pt": (lambda t, m: _torch_file(t / "w.pt", m),
                                   lambda p: load_encoder(f"timm:resnet18@{p}"), ModelSpecError),
    "evaluate: timm weights .safetensors (a pickle)": (lambda t, m: _torch_file(t / "w.safetensors", m),
                                                       lambda p: load_encoder(f"timm:resnet18@{p}"), ModelSpecError),
    "evaluate: a .ckpt": (lambda t, m: _torch_file(t / "last.ckpt", m), load_encoder, ModelSpecError),
    "evaluate: a .pt model": (lambda t, m: _torch_file(t / "model.pt", m), load_encoder, ModelSpecError),
    "evaluate: features .safetensors (a pickle)": (lambda t, m: _pickle_file(t / "feats.safetensors", m),
                                                   load_encoder, ModelSpecError),
}


@pytest.mark.parametrize("force_unsafe_default", [False, True], ids=["torch-default", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"])
@pytest.mark.parametrize("row", sorted(ROWS))
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, monkeypatch, row, force_unsafe_default):
    if force_unsafe_default:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    write, load, error = ROWS[row]
    marker = tmp_path / "pwned"
    path = write(tmp_path, marker)
    assert not marker.exists()
    with pytest.raises(error) as caught:
        load(path)
    assert not marker.exists(), f"{row}: the pickle ran"
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message


def test_the_payload_really_runs_code_under_a_plain_unpickler(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(_pickle_file(tmp_path / "evil.pkl", marker).read_bytes())
    assert marker.exists()
    marker.unlink()
    torch.load(_torch_file(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------- static scan of the sources

# The one unpickler in sslkit: gensim's bundled test corpus ``mini_newsgroup`` is a 2013 pickle of a
# scikit-learn Bunch (a file inside the installed gensim package, not a user file), read by a
# pickle.Unpickler subclass whose find_class resolves only seven allow-listed constructors.
ALLOWED_PICKLE = {("data/text.py", "pickle.Unpickler")}
PICKLE_READERS = {"load", "loads", "Unpickler", "_Unpickler"}
UNSAFE_MODULES = {"dill", "cloudpickle", "joblib", "shelve", "marshal", "_pickle", "cPickle"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "UnsafeLoader", "FullLoader"}


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _problems(relative: str, tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name == "torch.load" and not _keyword_is(node, "weights_only", True):
                found.append(f"{where}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and not _keyword_is(node, "allow_pickle", False):
                found.append(f"{where}: {name} without allow_pickle=False")
            if name.endswith(("read_pickle", "jit.load")):
                found.append(f"{where}: {name} unpickles")
        if isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name.startswith("pickle.") and node.attr in PICKLE_READERS and (relative, name) not in ALLOWED_PICKLE:
                found.append(f"{where}: {name} outside the allow-list")
            if name.startswith("yaml.") and node.attr in UNSAFE_YAML:
                found.append(f"{where}: {name} builds Python objects (use yaml.safe_load)")
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "yaml"):
            for alias in node.names:
                if alias.name in PICKLE_READERS | UNSAFE_YAML:
                    found.append(f"{where}: from {node.module} import {alias.name}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{where}: imports {module}")
    return found


def test_the_sources_never_unpickle_outside_the_allow_list():
    problems, seen = [], {"torch.load": 0, "np.load": 0, "pickle.Unpickler": 0}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        problems += _problems(relative, tree)
        for node in ast.walk(tree):
            name = _dotted(node.func) if isinstance(node, ast.Call) else _dotted(node) if isinstance(node, ast.Attribute) else ""
            if name in seen:
                seen[name] += 1
    assert not problems, problems
    assert seen["torch.load"] >= 3 and seen["np.load"] >= 1 and seen["pickle.Unpickler"] == 1, seen  # the scan sees them


@pytest.mark.parametrize("source, problem", [
    ("torch.load(path)", "torch.load without weights_only=True"),
    ("torch.load(path, weights_only=False)", "torch.load without weights_only=True"),
    ("np.load(path)", "np.load without allow_pickle=False"),
    ("np.load(path, allow_pickle=True)", "np.load without allow_pickle=False"),
    ("pickle.loads(blob)", "pickle.loads outside the allow-list"),
    ("pickle.load(f)", "pickle.load outside the allow-list"),
    ("from pickle import load", "from pickle import load"),
    ("yaml.load(text, Loader=yaml.Loader)", "yaml.load builds Python objects"),
    ("import dill", "imports dill"),
    ("pd.read_pickle(path)", "pd.read_pickle unpickles"),
])
def test_the_scan_catches_each_unsafe_reader(source, problem):
    assert any(problem in p for p in _problems("x.py", ast.parse(source))), _problems("x.py", ast.parse(source))


def test_the_allow_listed_unpickler_refuses_anything_else(tmp_path):
    import io

    from sslkit.data.text import _NewsgroupUnpickler

    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _NewsgroupUnpickler(io.BytesIO(pickle.dumps(_RunsCode(marker), protocol=0)), encoding="latin1").load()
    assert not marker.exists()
