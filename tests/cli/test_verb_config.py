"""Every verb takes settings from --config FILE.yaml and key=value words (issue 20, item 6): which verbs, the
precedence (defaults < file < command-line options < key=value), the checks, and a run configured by a file."""

from __future__ import annotations

import json

import pytest

from sslkit.cli import _parser, main
from sslkit.commands.verb_config import leaf_parsers, resolve


def _resolved(argv):
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    return resolve(parser, argv, args, extra)


def test_every_verb_has_a_config_file_or_a_recipe():
    leaves = list(leaf_parsers(_parser()))
    with_recipe = [p.prog for p in leaves if any(a.dest == "overrides" for a in p._actions)]
    with_config = [p.prog for p in leaves if "--config" in p._option_string_actions]
    assert sorted(with_recipe) == ["sslkit flops", "sslkit pretrain"]
    assert len(with_config) + len(with_recipe) == len(leaves)
    from sslkit.commands import VERBS

    verbs = {prog.split()[1] for prog in with_config + with_recipe}
    assert len(verbs) == len(VERBS) >= 13, verbs  # every verb (12 when issue 20 was filed, export since)
    assert "keys:" in _parser()._subparsers._group_actions[0].choices["evaluate"].format_help()


def test_file_then_command_line_then_key_value(tmp_path):
    config = tmp_path / "evaluate.yaml"
    config.write_text("batch-size: 64\nknn:\n  k: [10, 20]\nno_cache: true\npooling: mean\nseed: 3\n")
    base = ["evaluate", "timm:resnet18", "--data", "digits", "--config", str(config)]
    args = _resolved(base)
    assert (args.batch_size, args.knn_k, args.no_cache, args.pooling, args.seed) == (64, (10, 20), True, "mean", 3)
    # An option typed on the command line beats the file; a key=value word beats both.
    args = _resolved([*base, "--batch-size", "32", "seed=7", "knn-k=5,6"])
    assert (args.batch_size, args.seed, args.knn_k, args.pooling) == (32, 7, (5, 6), "mean")
    # Without the file the verb's own defaults stand.
    assert _resolved(["evaluate", "timm:resnet18", "--data", "digits"]).batch_size == 128


@pytest.mark.parametrize("text,override,message", [
    ("batch_sise: 64\n", None, "Key 'batch_sise' (from"),
    ("", "poolng=mean", "did you mean 'pooling'"),
    ("pooling: magic\n", None, "not a valid --pooling"),
    ("", "seed=three", "'three'"),
    ("no_cache: maybe\n", None, "true or false"),
    ("- just a list\n", None, "not a mapping"),
])
def test_bad_keys_and_values_are_one_sentence(tmp_path, capsys, text, override, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    argv = ["evaluate", "timm:resnet18", "--data", "digits", "--config", str(config), "--out", str(tmp_path / "o")]
    assert main(argv + ([override] if override else [])) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert main(["noise", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml' does not exist" in capsys.readouterr().err


def test_a_verb_runs_from_its_config_file(tmp_path):
    config = tmp_path / "evaluate.yaml"
    out = tmp_path / "report"
    config.write_text(f"data: digits\nprotocols: rankme\nimage-size: 16\nno-cache: true\nout: {out}\n")
    assert main(["evaluate", "timm:resnet18", "--config", str(config), "batch-size=256"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocols"] == ["rankme"] and report["settings"]["batch_size"] == 256
    assert report["settings"]["image_size"] == 16


def test_required_options_may_come_from_the_file(tmp_path):
    config = tmp_path / "noise.yaml"
    config.write_text(f"data: digits\nkind: gaussian\nlevel: 25\nout: {tmp_path / 'noisy'}\n")
    args = _resolved(["noise", "--config", str(config)])
    assert (args.data, args.kind, args.level) == ("digits", "gaussian", 25.0)
    with pytest.raises(SystemExit):
        _resolved(["noise", "--kind", "gaussian"])  # still required when nothing gives them
