"""Model specs: the offline default, local folders, clear errors, the tiny test model."""

from __future__ import annotations

from pathlib import Path

import pytest

from marc_ray.annotate.models import check_model_spec, load_model, materialize_model, model_name


def test_unknown_model_path(tmp_path):
    with pytest.raises(ValueError, match="unknown model '/no/such/model'.*'smollm2'"):
        check_model_spec("/no/such/model")
    with pytest.raises(ValueError, match="has no config.json"):
        materialize_model(str(tmp_path))


def test_default_model_is_a_cached_safetensors_folder():
    folder = Path(materialize_model("smollm2"))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert materialize_model("default") == str(folder)  # converted once, then reused
    assert model_name("smollm2") == "SmolLM2-135M-Instruct"


def test_tiny_model_loads(tiny_model):
    model = load_model(tiny_model)
    assert model.config.num_hidden_layers == 2
    assert materialize_model(tiny_model) == str(Path(tiny_model).resolve())
