from pathlib import Path

import pytest

from sslkit.config import ConfigError, RunConfig, load_config, to_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_shipped_recipes_validate(name):
    cfg = load_config(RECIPES / name)
    assert isinstance(cfg, RunConfig)
    assert cfg.crops.global_size % cfg.model.patch_size == 0


def test_vits16_recipe_holds_the_reference_defaults():
    cfg = load_config(RECIPES / "dinov2-vits16.yaml")
    assert (cfg.crops.global_size, cfg.crops.local_size, cfg.crops.n_local) == (224, 96, 8)
    assert cfg.dinov2.head_out_dim == 65536 and cfg.optim.iters_per_epoch == 1250
    assert (cfg.optim.weight_decay, cfg.optim.weight_decay_end, cfg.optim.momentum_teacher) == (0.04, 0.4, 0.992)


def test_overrides_are_typed_and_nested():
    cfg = load_config(RECIPES / "dinov2-tiny.yaml",
                      ["optim.base_lr=1e-3", "crops.local_scale=[0.1, 0.3]", "model.depth=2", "trainer.devices=auto"])
    assert cfg.optim.base_lr == pytest.approx(1e-3)
    assert cfg.crops.local_scale == (0.1, 0.3)
    assert cfg.model.depth == 2 and cfg.trainer.devices == "auto"


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"'optim\.base_lrr'.*Did you mean 'base_lr'"):
        load_config(None, ["optim.base_lrr=0.1"])


def test_unknown_section_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"Unknown config key 'optimizer'.*Allowed keys here: method, data"):
        load_config(None, ["optimizer.lr=0.1"])


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"'dinov2\.centering'.*'softmax', 'sinkhorn'"):
        load_config(None, ["dinov2.centering=sinkhorm"])


def test_bad_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'optim\.batch_size' got 'big'; expected an integer"):
        load_config(None, ["optim.batch_size=big"])
    with pytest.raises(ConfigError, match=r"'optim\.batch_size' got 3\.5"):
        load_config(None, ["optim.batch_size=3.5"])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match=r"'crops\.local_size' = 18 must be a positive multiple of model\.patch_size = 4"):
        load_config(RECIPES / "dinov2-tiny.yaml", ["crops.local_size=18"])
    with pytest.raises(ConfigError, match="no DINO pair"):
        load_config(None, ["crops.n_global=1", "crops.n_local=0"])
    with pytest.raises(ConfigError, match=r"'crops\.global_scale'"):
        load_config(None, ["crops.global_scale=[0.9, 0.2]"])


def test_missing_and_malformed_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["optim.base_lr"])


def test_round_trip_through_dict():
    cfg = load_config(RECIPES / "dinov2-tiny.yaml", ["optim.epochs=3"])
    assert load_config(to_dict(cfg)) == cfg


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.precision=bogus", r"'trainer\.precision' got 'bogus'; expected one of 32-true, bf16-mixed"),
    ("trainer.strategy=bogus", r"'trainer\.strategy' got 'bogus'; expected auto, fsdp or one of Lightning's ddp"),
    ("trainer.accelerator=tpuu", r"'trainer\.accelerator' got 'tpuu'"),
    ("trainer.devices=0", r"'trainer\.devices' = 0 must be a count >= 1"),
    ("trainer.devices=-3", r"'trainer\.devices' = -3 must be a count >= 1"),
    ("trainer.devices=gpu0", r"'trainer\.devices' = 'gpu0'"),
    ("trainer.num_nodes=0", r"'trainer\.num_nodes' must be at least 1"),
    ("trainer.log_every_n_steps=0", r"'trainer\.log_every_n_steps' must be at least 1"),
    ("trainer.max_steps=0", r"'trainer\.max_steps' = 0 must be at least 1; leave it unset"),
    ("model.num_heads=5", r"'model\.num_heads' = 5 must divide the width 192"),
    ("model.embed_dim=1000000000", r"'model\.embed_dim' must lie in \[1, 16384\], got 1000000000"),
    ("model.depth=-1", r"'model\.depth' must lie in \[1, 256\], got -1"),
    ("model.patch_size=0", r"'model\.patch_size' must lie in \[1, 1024\], got 0"),
    ("model.drop_path_rate=1.5", r"'model\.drop_path_rate' must lie in \[0, 1\)"),
])
def test_trainer_and_model_values_fail_at_start(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RECIPES / "dinov2-tiny.yaml", [override])


@pytest.mark.parametrize("override", ["trainer.devices=2", "trainer.devices=-1", "trainer.devices=auto",
                                      "trainer.devices='0,1'", "trainer.strategy=ddp", "trainer.precision=bf16-mixed",
                                      "trainer.max_steps=1", "model.num_heads=4"])
def test_good_trainer_values_pass(override):
    load_config(RECIPES / "dinov2-tiny.yaml", [override])


def test_a_binary_recipe_is_one_sentence(tmp_path):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="is not a text file"):
        load_config(binary)


def test_an_accelerator_this_machine_lacks_is_refused(monkeypatch):
    import torch

    from sslkit.engine.strategy import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(RECIPES / "dinov2-tiny.yaml", ["trainer.accelerator=gpu"])
    with pytest.raises(ConfigError, match=r"torch sees no CUDA GPU here"):
        check_accelerator(cfg.trainer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"'trainer\.devices' = 4 asks for more GPUs than this machine has \(2\)"):
        check_accelerator(load_config(RECIPES / "dinov2-tiny.yaml", ["trainer.accelerator=gpu", "trainer.devices=4"]).trainer)
    check_accelerator(load_config(RECIPES / "dinov2-tiny.yaml", ["trainer.accelerator=gpu", "trainer.devices=2"]).trainer)
