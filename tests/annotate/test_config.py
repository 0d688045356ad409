"""AnnotateConfig: validation once, with errors naming the field, and the CLI mapping."""

from __future__ import annotations

import argparse

import pytest

from marc_ray.annotate import cli
from marc_ray.annotate.config import AnnotateConfig

BASE = {"input": "items.jsonl", "pool": "pool.jsonl", "output": "out"}


def test_defaults_are_marc_settings():
    config = AnnotateConfig(**BASE).validate()
    assert (config.n_annotators, config.k_shots, config.subset_size_limit) == (5, 5, 5)
    assert config.orders == ("ab", "ba") and config.engine == "transformers"


@pytest.mark.parametrize("change,message", [
    ({"engine": "tgi"}, r"engine must be one of \['http', 'replay', 'transformers', 'vllm'\]"),
    ({"mode": "vote"}, "mode must be one of"),
    ({"k_shots": 0}, "k_shots must be an integer >= 1"),
    ({"max_subset_size": 6}, r"max_subset_size must be at most k_shots \(5\)"),
    ({"orders": ("ba",)}, "orders must be one of"),
    ({"labels": ("A", "A")}, "labels must be two different"),
    ({"beta": -1.0}, "beta must be a positive number"),
    ({"pool": ""}, "pass --pool"),
    ({"device": "tpu"}, "device must be one of"),
    ({"engine": "vllm", "engine_options": {"gpu_mem": 1}}, r"engine_options must be keys of the vllm engine"),
    ({"engine": "http", "engine_options": {"url": "x"}}, r"keys of the http engine .*unknown \['url'\]"),
    ({"engine": "replay", "engine_options": {"run": "x"}}, r"keys of the replay engine \(\['annotators', 'runs', 'zero_shot'\]\)"),
])
def test_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        AnnotateConfig(**{**BASE, **change}).validate()


def test_unknown_key_and_files(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'shots'; allowed keys: \["):
        AnnotateConfig.from_dict({"shots": 3})
    path = tmp_path / "c.yaml"
    path.write_text("annotate:\n  k_shots: 3\n  labels: X,Y\n  input: a.jsonl\n")
    config = AnnotateConfig.from_file(path)
    assert config.k_shots == 3 and config.labels == ("X", "Y") and config.input == "a.jsonl"


def test_cli_flags_override_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("input: a.jsonl\npool: p.jsonl\noutput: o\nk_shots: 3\n")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["annotate", "--config", str(path), "--k-shots", "2",
                              "--orders", "ab", "--no-zero-shot", "--engine", "http",
                              "--engine-options", '{"concurrency": 2}'])
    config = cli.config_from_args(args)
    assert (config.k_shots, config.orders, config.zero_shot) == (2, ("ab",), False)
    assert config.engine_options == {"concurrency": 2} and config.pool == "p.jsonl"
    assert args.handler is cli.run
