"""The README's "Bring your own judge" variants, run as written: its YAML blocks are written to the
files they name and its bash blocks run in order, in a fresh folder, with `.venv/bin` on PATH.

The one change made to the text: the server's port 8000 becomes a free port (this machine is
shared). Each variant asserts what a user would look at: exit 0, a certificate and a report, and
the pool partitions line where the pool has no annotator ids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from http_servers import free_port

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

SECTION = "### Bring your own judge"


def _blocks() -> tuple[dict[str, str], list[str]]:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    section = text[start:text.index("\n### ", start + len(SECTION))]
    configs = {}
    for body in re.findall(r"```yaml\n(.*?)```", section, re.S):
        name = re.match(r"# (\S+\.yaml)\n", body).group(1)
        configs[name] = body
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)
    return configs, commands


def _command(commands: list[str], needle: str) -> str:
    (block,) = [block for block in commands if needle in block]
    return block


def _run(script: str, folder: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "RAY_TMPDIR": (folder / "ray").read_text()}
    process = subprocess.Popen(["bash", "-e", "-c", script], cwd=folder, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:  # whatever the script left running (a server) goes with its session
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        process.wait()
    return subprocess.CompletedProcess(script, process.returncode, output)


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory):
    """One folder for the three variants, as a user would: the exports run once, each variant
    writes its own YAML file and its own run folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    tmp_path = tmp_path_factory.mktemp("readme")
    configs, commands = _blocks()
    # a Ray session of its own, under a short path (Ray's socket paths are limited to 107 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="ray-readme-", dir="/tmp")
    (tmp_path / "ray").write_text(ray_tmp)
    result = _run(_command(commands, "datasets export pandalm pandalm.jsonl"), tmp_path, 300)
    assert result.returncode == 0, result.stdout[-3000:]
    yield tmp_path, configs, commands
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _certificate(folder: Path, run_dir: str) -> dict:
    assert (folder / run_dir / "report" / "report.html").is_file()
    return json.loads((folder / run_dir / "calibrate" / "certificate.json").read_text())


def _report_text(folder: Path, run_dir: str) -> str:
    return (folder / run_dir / "report" / "report.html").read_text()


def test_the_readme_names_three_variants():
    configs, commands = _blocks()
    assert sorted(configs) == ["local.yaml", "replay.yaml", "server.yaml"]
    assert all("pool" not in body for body in configs.values())  # none needs a pool


def test_existing_verdicts_replay_as_written(readme_folder):
    folder, configs, commands = readme_folder
    (folder / "replay.yaml").write_text(configs["replay.yaml"])
    result = _run(_command(commands, "marc-ray run replay.yaml"), folder, 600)
    assert result.returncode == 0, result.stdout[-3000:]
    certificate = _certificate(folder, "runs/byoj-replay")
    assert certificate["n_calibration"] == 419  # PandaLM's calibration split, every item replayed
    assert "pool 0" in result.stdout  # no pool drawn for a replay judge
    assert "pool partitions" not in _report_text(folder, "runs/byoj-replay")


@pytest.mark.slow
def test_a_local_model_as_written(readme_folder):
    folder, configs, commands = readme_folder
    (folder / "local.yaml").write_text(configs["local.yaml"])
    result = _run(_command(commands, "marc-ray run local.yaml"), folder, 900)
    assert result.returncode == 0, result.stdout[-3000:]
    _certificate(folder, "runs/byoj-local")
    assert "comparisons 14, pool 2" in result.stdout  # 2 x 1 shots drawn from the 16 items' train split
    assert "2 pool partitions, not real annotators" in _report_text(folder, "runs/byoj-local")


@pytest.mark.slow
def test_an_openai_compatible_server_as_written(readme_folder):
    pytest.importorskip("vllm")
    folder, configs, commands = readme_folder
    port = str(free_port())
    (folder / "server.yaml").write_text(configs["server.yaml"].replace("127.0.0.1:8000",
                                                                      f"127.0.0.1:{port}"))
    script = _command(commands, "marc-ray run server.yaml").replace("8000", port)
    result = _run(script, folder, 1200)
    assert result.returncode == 0, result.stdout[-3000:]
    _certificate(folder, "runs/byoj-server")
    import pyarrow.parquet as pq

    (annotations,) = (folder / "runs/byoj-server/annotate").iterdir()  # the one judge's folder
    status = [s for row in pq.read_table(annotations).column("status").to_pylist() for s in row]
    # every run read from the server's log-probabilities, but those of PandaLM's empty responses
    # (likelihood mode has no token to score there: the engine says so)
    assert set(status) <= {"ok", "missing: empty continuation_first",
                           "missing: empty continuation_second"}
    assert status.count("ok") >= 0.85 * len(status)
