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
