import pytest

from marc_ray.fit import FitConfig


def test_defaults_are_marcs_published_settings():
    config = FitConfig()
    assert config.hidden_sizes == (64, 32, 16)
    assert (config.temperature, config.n_pairs, config.complexity_weight) == (0.1, 5000, 1e-4)
    assert (config.epochs, config.learning_rate, config.weight_decay) == (30, 1e-3, 1e-4)
    assert config.steps_per_epoch == 20


@pytest.mark.parametrize("changes, match", [
    ({"variant": "fancy"}, r"variant must be one of \['marc', 'vanilla'\], got 'fancy'"),
    ({"tie_policy": "coin"}, r"tie_policy must be one of \['disagree', 'drop'\]"),
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"margin_min": 0.5, "margin_max": 0.2}, "need 0 < margin_min < margin_max <= 1"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"hidden_sizes": (64, 0)}, "hidden_sizes must be positive widths"),
    ({"train_splits": ("train",), "valid_splits": ("train",)}, "overlap"),
])
def test_bad_values_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**changes)


def test_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ValueError, match=r"unknown key 'margn'; allowed keys: \['backend'"):
        FitConfig.from_dict({"margn": 0.1})
    config = FitConfig(margin_init=0.3, hidden_sizes=[8, 4])
    assert FitConfig.from_dict(config.to_dict()) == config
    assert config.replace(epochs=3).epochs == 3
