"""One way to configure every verb: a YAML file, then the command line, then ``key=value`` overrides.

``pretrain`` and ``flops`` read a recipe (``--recipe``) with ``key.sub=value`` overrides. Every other verb's
settings are its options; this module lets each of them come from ``--config FILE.yaml`` (keys named as the
options: ``knn-k``, ``knn_k`` or, nested, ``knn: {k: ...}``) and from ``key=value`` words after the options,
with one precedence: the verb's defaults < the file < options typed on the command line < ``key=value``.
Keys and values are checked as argparse checks the options (their ``type`` and ``choices``), and a bad one is
one sentence naming the key, where it came from and what is allowed.

Written here rather than with a config library: the keys, types and help already live in each verb's
argparse parser, and this reuses them as they are.
"""

from __future__ import annotations

import argparse
import difflib
import textwrap
from pathlib import Path
from typing import Any, Iterator

CONFIG_EPILOG = ("settings from a file: --config FILE.yaml with the options as keys (e.g. 'batch-size: 64', "
                 "'knn_k: [10, 20]', or nested 'knn: {k: [10, 20]}'); or as key=value words after the options. "
                 "Precedence: defaults < --config < options on the command line < key=value.")


def leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser under ``parser`` that runs a command (one without sub-commands of its own)."""
    seen: set[int] = set()
    stack = [parser]
    while stack:
        current = stack.pop()
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield current
            continue
        for action in subs:
            for child in action.choices.values():
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Give every verb that has no recipe of its own ``--config FILE.yaml`` and ``key=value`` overrides."""
    for leaf in leaf_parsers(parser):
        if any(a.dest == "overrides" for a in leaf._actions) or "--config" in leaf._option_string_actions:
            continue  # pretrain / flops: the recipe system
        leaf.add_argument("--config", metavar="FILE.yaml", help="read settings from a YAML file (keys: the options)")
        # A required option may come from the file: argparse stops requiring it, `resolve` checks it instead.
        required = [a for a in leaf._actions if a.option_strings and a.required]
        for action in required:
            action.required = False
        leaf.set_defaults(_options_parser=leaf, _required_options=tuple(a.dest for a in required))
        keys = textwrap.fill("keys: " + ", ".join(sorted(_option_actions(leaf))), width=100, subsequent_indent="  ")
        leaf.epilog = (((leaf.epilog + "\n\n") if leaf.epilog else "") + textwrap.fill(CONFIG_EPILOG, width=100)
                       + "\n" + keys)


def _option_actions(leaf: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The leaf's settable options by key (the long option name without dashes)."""
    options = {}
    for action in leaf._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest in ("help", "config", "version") or isinstance(action, argparse._VersionAction):
            continue
        options[longs[0][2:]] = action
    return options


def _normalise(key: str) -> str:
    return key.strip().replace("_", "-").replace(".", "-")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _convert(action: argparse.Action, value: Any, from_text: bool) -> Any:
    """``value`` as the option would hold it after argparse parsed it from the command line."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        flag = _bool(value) if isinstance(value, str) else value
        if not isinstance(flag, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        # `key: true` means the flag is given: store_true stores True, store_false (a `--no-...` flag) False.
        return flag if isinstance(action, argparse._StoreTrueAction) else not flag
    convert = action.type or (lambda text: text)
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many:
        items = value if isinstance(value, list) else (value.split() if from_text else [value])
        result = [convert(str(item)) for item in items]
        for item in result:
            _check_choice(action, item)
        return result
    if isinstance(value, list):
        # Options typed as comma-separated lists (e.g. --knn-k 10,20) take a YAML list.
        value = ",".join(str(item) for item in value)
    result = convert(str(value)) if value is not None else None
    _check_choice(action, result)
    return result


def _check_choice(action: argparse.Action, value: Any) -> None:
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"choose one of {', '.join(map(str, action.choices))}")


def _settings(options: dict[str, argparse.Action], raw: dict[str, Any], where: str, verb: str,
              from_text: bool) -> dict[str, Any]:
    """``{dest: value}`` of ``raw`` ``{key: value}``, each key and value checked."""
    from sslkit.config import ConfigError

    settings = {}
    for key, value in raw.items():
        name = _normalise(key)
        action = options.get(name)
        if action is None:
            close = difflib.get_close_matches(name, list(options), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"Key '{key}' ({where}) is not a setting of 'sslkit {verb}'; {hint}its keys are: "
                              f"{', '.join(sorted(options))}.")
        try:
            settings[action.dest] = _convert(action, value, from_text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            raise ConfigError(f"Key '{key}' = {value!r} ({where}) is not a valid --{name} for 'sslkit {verb}': "
                              f"{err}.") from None
    return settings


def read_config_file(path: str | Path, verb: str) -> dict[str, Any]:
    """The flattened ``{key: value}`` of a verb's YAML settings file."""
    import yaml

    from sslkit.config import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config file '{path}' does not exist; pass a YAML file of 'sslkit {verb}' settings.")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config file '{path}' is not valid YAML ({str(err).splitlines()[0]}); fix the file.") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"--config file '{path}' holds a {type(tree).__name__}, not a mapping of settings; "
                          f"write one 'key: value' per line.")
    return _flatten(tree)


def resolve(parser: argparse.ArgumentParser, argv: list[str] | None, args: argparse.Namespace,
            extra: list[str]) -> argparse.Namespace:
    """``args`` with the verb's ``--config`` file and ``key=value`` words applied (see the module docstring)."""
    leaf = getattr(args, "_options_parser", None)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or leaf is None]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if leaf is None:
        return args
    verb = leaf.prog.split(" ", 1)[1] if " " in leaf.prog else leaf.prog
    options = _option_actions(leaf)
    if args.config:
        from_file = _settings(options, read_config_file(args.config, verb), f"from {args.config}", verb, False)
        if from_file:
            # As defaults of this verb, then parsed again: options typed on the command line win over the file.
            leaf.set_defaults(**from_file)
            args, _ = parser.parse_known_args(argv)
    words = dict(word.split("=", 1) for word in extra)
    for dest, value in _settings(options, words, "on the command line", verb, True).items():
        setattr(args, dest, value)
    missing = [f"--{key}" for key, action in options.items()
               if action.dest in args._required_options and getattr(args, action.dest) is None]
    if missing:
        leaf.error(f"the following arguments are required: {', '.join(missing)} (on the command line, as key=value "
                   f"or in --config)")
    # Verbs record vars(args) in their outputs: leave only the settings there.
    del args._options_parser, args._required_options
    return args
