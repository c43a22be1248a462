"""sslkit: self-supervised learning research, usable."""

__version__ = "0.1.0"

# Lazy re-exports (PEP 562): `import sslkit` stays light (no torch import) while
# `sslkit.load_backbone(path)` works. Maps public name -> defining module.
_LAZY_EXPORTS = {
    "load_backbone": "sslkit.nn.export",
    "save_backbone": "sslkit.nn.export",
}


def __getattr__(name):
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sslkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
