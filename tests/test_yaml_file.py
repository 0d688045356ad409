"""The one YAML loader (``contracts.yaml_file.load_yaml``): a settings file cannot change the
guarantee silently (a duplicate key) or hang a command (an alias bomb), through the real CLI."""

from __future__ import annotations

import time

import pytest

from marc_ray.cli import main
from marc_ray.config import PipelineConfig
from marc_ray.contracts.yaml_file import load_yaml

COMMANDS = ["run", "plan"]


def alias_bomb(levels: int = 8, fan_out: int = 10) -> str:
    """About 1 kB of an otherwise valid config whose aliases stand for fan_out**levels (10^8)
    strings once walked (validation, redaction, a deep copy)."""
    lines = ["data: {demo: {n_items: 240}}", "annotate:", "  engine_options:",
             "    l0: &l0 [" + ", ".join(['"' + "x" * 48 + '"'] * fan_out) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"    l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
    return "\n".join(lines) + "\n"


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_duplicate_key_is_refused_naming_file_line_and_key(tmp_path, capsys, command):
    path = tmp_path / "config.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  demo: {{n_items: 240}}\n"
                    "calibrate: {alpha: 0.2, alpha: 0.9}\n")
    assert main([command, str(path)]) == 2
    line = one_error_line(capsys)
    assert f"{path}, line 4" in line and "duplicate key 'calibrate.alpha'" in line
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_a_duplicate_key_in_block_style_names_its_second_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("calibrate:\n  alpha: 0.2\n  delta: 0.1\n  alpha: 0.9\n")
    with pytest.raises(ValueError, match=r"line 4: duplicate key 'calibrate.alpha' \(first at line 2\)"):
        PipelineConfig.from_yaml(path)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_alias_bomb_is_refused_at_once(tmp_path, capsys, command):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert 900 <= path.stat().st_size <= 1200
    start = time.perf_counter()
    with pytest.raises(ValueError, match="anchor"):  # the load that used to hang
        PipelineConfig.from_yaml(path)
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    assert main([command, str(path)]) == 2
    # the whole command, argparse and imports included: seconds at most on a busy 2-core host
    # (the old code was still walking the aliases after minutes)
    assert time.perf_counter() - start < 30.0
    line = one_error_line(capsys)
    assert f"{path}, line 4" in line and "anchor" in line


def test_aliases_anchors_and_deep_nesting_are_refused_everywhere():
    with pytest.raises(ValueError, match=r"f.yaml, line 2: an alias \(\*\) 'a'"):
        load_yaml("x: 1\ny: *a\n", "f.yaml")
    with pytest.raises(ValueError, match="f.yaml: nested more than 64 levels"):
        load_yaml("[" * 2000 + "]" * 2000, "f.yaml")
    with pytest.raises(ValueError, match=r"duplicate key 'cascade\[1\].model'"):
        load_yaml("cascade:\n - {model: a}\n - {model: b, model: c}\n", "f.yaml")


def test_what_safe_load_accepts_otherwise_loads_the_same():
    text = "a: 1\n'1': x\n1: y\nb: [1, {c: null}]\nd: {e: 0.5}\n"
    assert load_yaml(text) == {"a": 1, "1": "x", 1: "y", "b": [1, {"c": None}], "d": {"e": 0.5}}
    assert load_yaml("") is None


def test_every_yaml_the_repository_ships_loads():
    import pathlib

    repo = pathlib.Path(__file__).resolve().parents[1]
    files = sorted(p for pattern in ("configs/*.yaml", "jobs/*.yaml", "*.yaml")
                   for p in repo.glob(pattern))
    assert len(files) >= 5
    for path in files:
        load_yaml(path.read_text(encoding="utf-8"), str(path))


def test_a_json_annotate_config_with_a_duplicate_key_is_refused(tmp_path):
    from marc_ray.annotate.config import AnnotateConfig

    path = tmp_path / "annotate.json"
    path.write_text('{"model": "smollm2",\n "n_annotators": 2,\n "n_annotators": 5}\n')
    with pytest.raises(ValueError, match=r"line 3.*duplicate key 'n_annotators'"):
        AnnotateConfig.from_file(path)
    path.write_text('{"model": "smollm2", "n_annotators": 2}')
    assert AnnotateConfig.from_file(path).n_annotators == 2
