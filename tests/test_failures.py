"""Every failure is one line with a documented exit code, and no secret reaches any output.

Real parts only: the ``marc-ray`` command in its own process, a real local Ray cluster (its
session folder under the test's ``RAY_TMPDIR``, grepped for secrets), real HTTP servers on
127.0.0.1 answering 401 / 500 (or a closed port), a Ray worker really killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pyarrow.parquet as pq

from http_servers import closed_port_url, echoing
from marc_ray.contracts.errors import EXIT_INFRASTRUCTURE, EXIT_INPUT
from marc_ray.demo import DemoSpec, write_demo

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "MARC_RAY_TEST_JUDGE_KEY"
CLI_TIMEOUT_S = 600  # a Ray start on a loaded machine can take a minute; the work is tiny


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("failures-data")
    comparisons, pool = write_demo(folder, DemoSpec(n_items=8, seed=0))
    return {"input": comparisons, "pool": pool}


def marc_ray(args, tmp_path, ray_tmp, env=None, timeout=CLI_TIMEOUT_S):
    """Run ``marc-ray ARGS`` in its own process, in tmp_path, Ray's session folder in ray_tmp."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp),
                    RAY_AUTH_MODE="disabled")
    full_env.pop("RAY_ADDRESS", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "marc_ray.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=tmp_path, timeout=timeout)


def annotate_args(files, tmp_path, base_url, **options):
    engine_options = {"base_url": base_url, "max_retries": 1, "backoff": 0.01, "timeout": 10}
    engine_options.update(options)
    return ["annotate", "--input", str(files["input"]), "--pool", str(files["pool"]),
            "--output", str(tmp_path / "out"), "--engine", "http", "--model", "judge",
            "--mode", "choice", "--n-annotators", "1", "--k-shots", "1", "--num-workers", "1",
            "--shard-size", "4", "--no-progress", "--engine-options", json.dumps(engine_options)]


RAY_NOISE = ("constructor arguments in the object store", "Progress bars disabled",
             "Execution plan of Dataset")


def marc_ray_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("marc-ray ")]


def assert_one_line_failure(result, code: int, *words: str) -> str:
    """Exit ``code``, exactly one line from marc_ray on stderr, no traceback; the line."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    lines = marc_ray_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def files_holding(folder: Path, secret: str) -> list[str]:
    """Every file under ``folder`` whose bytes hold ``secret`` (Ray's logs included)."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


# ---- engine failures: exit 5, one line, no traceback, the key nowhere -------------------------

def test_a_401_that_echoes_the_key_is_one_line_and_the_key_is_nowhere(demo_files, tmp_path,
                                                                      ray_tmp):
    key = "sk-proj-Zq81NeverPrintMe0x7f"
    with echoing(401) as server:
        result = marc_ray(annotate_args(demo_files, tmp_path, server.base_url,
                                        api_key_env=KEY_ENV), tmp_path, ray_tmp,
                          env={KEY_ENV: key})
    line = assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "answered 401",
                                   "check the API key", "rerun to resume")
    assert len(server.requests) >= 1  # the request really reached the server, with the key
    for noise in RAY_NOISE:  # a quiet terminal: Ray's own lines went to its logs
        assert noise not in result.stderr, noise
    assert key not in result.stdout + result.stderr, line
    assert list(ray_tmp.rglob("*.log")), "Ray's session logs should be there to grep"
    assert files_holding(tmp_path, key) == []  # the output folder
    assert files_holding(ray_tmp, key) == []  # Ray's session logs (Ray Data's and the workers')


def test_a_server_error_after_the_retries_is_one_line(demo_files, tmp_path, ray_tmp):
    with echoing(500) as server:
        result = marc_ray(annotate_args(demo_files, tmp_path, server.base_url), tmp_path, ray_tmp)
    assert len(server.requests) >= 2  # retried once (max_retries 1), then gave up
    assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "failed after 2 attempts", "500",
                            "rerun to resume")


def test_an_unreachable_server_is_one_line(demo_files, tmp_path, ray_tmp):
    result = marc_ray(annotate_args(demo_files, tmp_path, closed_port_url()), tmp_path, ray_tmp)
    assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "failed after 2 attempts",
                            "refused", "rerun to resume")


def test_verbose_shows_rays_own_lines(demo_files, tmp_path, ray_tmp):
    result = marc_ray(["--verbose"] + annotate_args(demo_files, tmp_path, closed_port_url()),
                      tmp_path, ray_tmp)
    assert result.returncode == EXIT_INFRASTRUCTURE
    assert "Execution plan of Dataset" in result.stderr and "Progress bars disabled" in result.stderr


# ---- a refused run leaves nothing behind --------------------------------------------------------

def refused_run_config(tmp_path, comparisons, pool, run_dir) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(f"""
run_dir: {run_dir}
data: {{comparisons: {comparisons}, pool: {pool}}}
annotate: {{engine: http, model: judge, mode: choice}}
fit: {{enabled: false}}
calibrate: {{confidence: conf_simulated, compare: [conf_simulated]}}
""")
    return config


def duplicate_id(demo_files, tmp_path) -> Path:
    rows = Path(demo_files["input"]).read_text().splitlines()
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(rows + rows[:1]) + "\n")
    return path


def bad_label(demo_files, tmp_path) -> Path:
    rows = [json.loads(line) for line in Path(demo_files["input"]).read_text().splitlines()]
    rows[3]["human_votes"][0]["label"] = "maybe"
    path = tmp_path / "bad_label.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def csv_data(demo_files, tmp_path) -> Path:
    path = tmp_path / "comparisons.csv"
    path.write_text("id,instruction,response_a,response_b\n1,a,b,c\n")
    return path


@pytest.mark.parametrize("make_data", [duplicate_id, bad_label, csv_data])
def test_a_run_refused_after_load_leaves_nothing(demo_files, tmp_path, capsys, make_data):
    from marc_ray.cli import main

    comparisons = make_data(demo_files, tmp_path)
    fresh = tmp_path / "fresh-run"
    assert main(["run", str(refused_run_config(tmp_path, comparisons, demo_files["pool"],
                                               fresh))]) == EXIT_INPUT
    assert not fresh.exists()  # no run/config.yaml, no empty annotate/<judge>/
    lines = marc_ray_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(comparisons.name) in lines[0], lines

    earlier = tmp_path / "earlier-run"  # what an earlier run left is never touched
    (earlier / "notes").mkdir(parents=True)
    (earlier / "notes" / "mine.txt").write_text("kept")
    assert main(["run", str(refused_run_config(tmp_path, comparisons, demo_files["pool"],
                                               earlier))]) == EXIT_INPUT
    assert sorted(p.relative_to(earlier).as_posix() for p in earlier.rglob("*")) == \
        ["notes", "notes/mine.txt"]


# ---- residue: throughput, special files, symlink loops ------------------------------------------

@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf"])
def test_plan_throughput_must_be_positive_and_finite(demo_files, tmp_path, capsys, value):
    from marc_ray.cli import main

    config = refused_run_config(tmp_path, demo_files["input"], demo_files["pool"], tmp_path / "r")
    assert main(["plan", str(config), "--throughput", value, "--throughput-unit", "runs"]) \
        == EXIT_INPUT
    err = capsys.readouterr().err
    assert marc_ray_lines(err) == [line for line in err.splitlines() if line]
    assert "--throughput must be a positive, finite number" in err and "hours" not in err


def test_a_fifo_as_data_or_config_is_refused_not_waited_on(demo_files, tmp_path):
    fifo = tmp_path / "comparisons.jsonl"
    os.mkfifo(fifo)  # nobody ever writes: a reader that opened it would wait forever
    config = refused_run_config(tmp_path, fifo, demo_files["pool"], tmp_path / "run")
    result = marc_ray(["run", str(config)], tmp_path, tmp_path, timeout=120)
    line = assert_one_line_failure(result, EXIT_INPUT, "not a regular file (a FIFO")
    assert str(fifo) in line
    config_fifo = tmp_path / "config.yaml"
    os.mkfifo(config_fifo)
    result = marc_ray(["run", str(config_fifo)], tmp_path, tmp_path, timeout=120)
    assert_one_line_failure(result, EXIT_INPUT, "config.yaml", "not a regular file (a FIFO")


def test_a_symlink_loop_is_named_as_such(demo_files, tmp_path, capsys):
    from marc_ray.cli import main

    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    config = refused_run_config(tmp_path, loop, demo_files["pool"], tmp_path / "run")
    assert main(["run", str(config)]) == EXIT_INPUT
    assert main(["run", str(loop)]) == EXIT_INPUT  # as the config, too
    lines = marc_ray_lines(capsys.readouterr().err)
    assert len(lines) == 2 and all("symlink loop" in line for line in lines), lines


# ---- secrets: four configurations, 60 generated shapes ------------------------------------------

def secret_shapes() -> list[str]:
    """60 secrets as users hold them: provider keys, bearer tokens, passwords with URL-special
    characters (#, /, ?, @, %, :, &, =, +, !) in every position."""
    import random

    rng = random.Random(21)
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

    def word(n):
        return "".join(rng.choice(alnum) for _ in range(n))

    shapes = [f"sk-{word(40)}", f"sk-proj-{word(30)}_{word(8)}", f"sk-ant-api03-{word(40)}",
              f"sk_live_{word(24)}", f"ghp_{word(36)}", f"github_pat_{word(22)}_{word(30)}",
              f"hf_{word(34)}", f"xoxb-{word(10)}-{word(12)}", f"AKIA{word(16).upper()}",
              f"AIza{word(35)}", f"eyJ{word(20)}.eyJ{word(30)}.{word(20)}", word(32), word(12)]
    specials = "#/?@%:&=+!$*,;"
    while len(shapes) < 60:
        chars = [rng.choice(alnum) for _ in range(rng.randint(10, 24))]
        for _ in range(rng.randint(1, 4)):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(specials))
        shapes.append("".join(chars))
    return shapes


SECRETS = secret_shapes()


def test_there_are_sixty_distinct_secret_shapes():
    assert len(set(SECRETS)) == 60
    assert all(any(c in s for s in SECRETS) for c in "#/?@%")


def http_config(tmp_path, engine_options: dict, name: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"""
run_dir: {tmp_path / "run"}
data: {{demo: {{n_items: 40}}}}
annotate: {{engine: http, model: judge, mode: choice, engine_options: {json.dumps(engine_options)}}}
fit: {{enabled: false}}
calibrate: {{confidence: conf_simulated, compare: [conf_simulated]}}
""")
    return config


@pytest.mark.parametrize("secret", SECRETS)
def test_a_secret_in_the_config_is_refused_and_never_shown(secret, tmp_path, capsys):
    # `plan` for every shape; `run` (the same load, then a run folder) for every sixth
    from marc_ray.cli import main

    configs = [  # 1. an api_key inside engine_options; 2 and 4. user:password@ in base_url
        http_config(tmp_path, {"api_key": secret, "base_url": "http://127.0.0.1:9/v1"}, "one"),
        http_config(tmp_path, {"base_url": f"http://user:{secret}@127.0.0.1:9/v1"}, "two"),
        http_config(tmp_path, {"base_url": f"https://{secret}@127.0.0.1:9/v1"}, "four"),
    ]
    commands = (["plan"], ["run"]) if SECRETS.index(secret) % 6 == 0 else (["plan"],)
    for config in configs[:1]:
        for command in commands:  # plan first: it never starts Ray
            assert main(command + [str(config)]) == EXIT_INPUT
            captured = capsys.readouterr()
            assert secret not in captured.out + captured.err
            assert "'api_key': ..." in captured.err  # the key's name, never its value
    for config in configs[1:]:
        for command in commands:
            assert main(command + [str(config)]) == EXIT_INPUT
            captured = capsys.readouterr()
            assert secret not in captured.out + captured.err
            assert "carries credentials" in captured.err and "api_key_env" in captured.err
    assert not (tmp_path / "run").exists()  # nothing stored: no run/config.yaml


@pytest.mark.parametrize("secret", SECRETS)
def test_redaction_finds_every_shape_wherever_it_is_written(secret):
    from marc_ray.contracts.redact import redact, redact_text

    texts = [f"https://user:{secret}@host.example:8443/v1?x=1",
             f"s3://{secret}@bucket/key", f"Authorization: Bearer {secret}",
             f'{{"headers": {{"Authorization": "Bearer {secret}"}}}}',
             f"{{'api_key': {secret!r}, 'base_url': 'http://h/v1'}}",
             f"password={secret}&user=x" if "&" not in secret else f"password={secret!r}",
             f"token: {secret!r}"]
    for text in texts:
        assert secret not in redact_text(text), text
        assert redact_text(redact_text(text)) == redact_text(text)
    stored = redact({"engine_options": {"api_key": secret},
                     "data": {"comparisons": f"https://u:{secret}@h/c.jsonl"}})
    assert secret not in json.dumps(stored)


def test_a_server_body_echoing_any_key_shape_is_scrubbed(monkeypatch):
    from marc_ray.annotate.http_engine import HttpEngine, HttpJudgeError

    with echoing(401) as server:
        for secret in SECRETS:
            monkeypatch.setenv(KEY_ENV, secret)
            engine = HttpEngine(server.base_url, "judge", api_key_env=KEY_ENV, max_retries=0,
                                concurrency=1)
            run = {"id": "x", "run": 0, "mode": "choice", "prefix": "Q", "suffix": "A or B?",
                   "label_first": "A", "label_second": "B"}
            with pytest.raises(HttpJudgeError) as raised:
                engine.judge([run])
            engine.close()
            assert "answered 401" in str(raised.value)
            assert secret not in str(raised.value) and secret not in repr(raised.value.args)
    assert len(server.requests) == len(SECRETS)


# ---- Ray failing to start, a worker lost beyond the retries -------------------------------------

def test_ray_failing_to_start_is_retried_once_then_one_line_with_a_hint(demo_files, tmp_path):
    not_a_folder = tmp_path / "ray-tmp-is-a-file"
    not_a_folder.write_text("")  # Ray cannot make its session folder here: a real start failure
    with echoing(500) as server:
        result = marc_ray(annotate_args(demo_files, tmp_path, server.base_url), tmp_path,
                          not_a_folder)
    assert len(server.requests) == 0
    assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "Ray could not start a local cluster "
                            "after 2 tries", "RAY_TMPDIR", "rerun to resume")


@pytest.mark.parametrize("command", [["fit", "--backend", "ray", "--address", "local"],
                                     ["fit", "--backend", "ray"], ["tune"]])
def test_fit_and_tune_on_ray_failing_to_start_is_one_line(command, tmp_path):
    from marc_ray.fit.synthetic import trap_annotations

    annotations = tmp_path / "annotations.parquet"
    pq.write_table(trap_annotations(60, seed=0, splits={"train": 0.5, "calibration": 0.5}),
                   annotations)
    not_a_folder = tmp_path / "ray-tmp-is-a-file"
    not_a_folder.write_text("")  # Ray cannot make its session folder here: a real start failure
    result = marc_ray([command[0], str(annotations), "--out", str(tmp_path / "model"),
                       *command[1:]], tmp_path, not_a_folder)
    assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "Ray could not start a local cluster "
                            "after 2 tries", "RAY_TMPDIR")
    assert not (tmp_path / "model").exists()


def kill_the_client(handler) -> None:
    """Kill (SIGKILL) the Ray worker process that sent this request: a worker lost mid-batch."""
    import psutil

    # the client's end of this very connection: its address and port, and the server's port at
    # the other end (a port number alone also matched another process's socket on another local
    # address: once the suite's own Ray GCS, which took the rest of the suite with it)
    client = handler.client_address
    server_port = handler.server.server_address[1]
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and tuple(connection.laddr) == tuple(client) and connection.raddr \
                and connection.raddr.port == server_port and connection.pid \
                and connection.pid != os.getpid():
            os.kill(connection.pid, signal.SIGKILL)


def test_a_worker_lost_beyond_the_retries_is_one_line(demo_files, tmp_path, ray_tmp):
    with echoing(200, on_request=kill_the_client) as server:
        result = marc_ray(annotate_args(demo_files, tmp_path, server.base_url)
                          + ["--max-restarts", "0", "--max-task-retries", "0"], tmp_path, ray_tmp)
    assert len(server.requests) >= 1
    # the job restarts on lost actors itself (issue 21); with no restart allowed it gives up
    assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "lost its engine actors",
                            "beyond the retries", "max_restarts", "rerun to resume")


def test_a_worker_killed_for_memory_is_one_line(demo_files, tmp_path, ray_tmp):
    # Ray's own memory monitor, told that 2% of the node's memory is the limit, kills the workers
    # as it would on a node that really runs out (no retries allowed, so the job ends)
    low_memory = {"RAY_memory_usage_threshold": "0.02", "RAY_memory_monitor_refresh_ms": "100",
                  "RAY_task_oom_retries": "0"}
    with echoing(500) as server:
        result = marc_ray(annotate_args(demo_files, tmp_path, server.base_url)
                          + ["--max-restarts", "0", "--max-task-retries", "0"], tmp_path, ray_tmp,
                          env=low_memory)
    assert_one_line_failure(result, EXIT_INFRASTRUCTURE, "killed for running out of memory",
                            "OutOfMemoryError", "batch_size", "rerun to resume")


# ---- every secret shape through Ray: one Ray session, its logs grepped (issue 21) ---------------

RAY_SECRETS_SCRIPT = """
import os, sys
import ray
from marc_ray.annotate.http_engine import HttpEngine
from marc_ray.ray_cluster import ensure_ray

base_url, n = sys.argv[1], int(sys.argv[2])
ensure_ray(num_cpus=1)
context = ray.data.DataContext.get_current()
context.max_errored_blocks = -1  # each failing block is logged by Ray Data, and the next one runs
run = {"id": "x", "run": 0, "mode": "choice", "prefix": "Q", "suffix": "A or B?",
       "label_first": "A", "label_second": "B"}

def judge(batch):  # one block, one request, with the key of its own variable
    engine = HttpEngine(base_url, "judge", api_key_env=f"MARC_RAY_TEST_KEY_{int(batch['id'][0])}",
                        max_retries=0, concurrency=1)
    engine.judge([run])
    return batch

rows = ray.data.range(n, override_num_blocks=n)
print("rows judged:", rows.map_batches(judge, batch_size=1).count())
"""


def test_every_secret_shape_stays_out_of_rays_logs(tmp_path, ray_tmp):
    # Every generated shape is the API key of one request to a server that answers 401 and
    # echoes the Authorization header; the engine's error (raised inside a Ray worker, logged by
    # Ray Data with its traceback) is scrubbed before Ray sees it. One Ray session for all of them.
    keys = {f"MARC_RAY_TEST_KEY_{i}": secret for i, secret in enumerate(SECRETS)}
    with echoing(401) as server:
        env = dict(os.environ, PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp),
                   RAY_AUTH_MODE="disabled", **keys)
        env.pop("RAY_ADDRESS", None)
        result = subprocess.run([sys.executable, "-c", RAY_SECRETS_SCRIPT, server.base_url,
                                 str(len(SECRETS))], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=CLI_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows judged: 0" in result.stdout  # every request failed, and the run went on
    assert len(server.requests) == len(SECRETS)  # each key really went out
    logs = [path for path in ray_tmp.rglob("*") if path.is_file() and not path.is_symlink()]
    answered = sum(path.read_bytes().count(b"answered 401") for path in logs)
    assert answered >= len(SECRETS), "Ray's logs should hold every request's error to grep"
    leaked = {secret: files_holding(ray_tmp, secret) for secret in SECRETS}
    assert {secret: files for secret, files in leaked.items() if files} == {}
    assert all(secret not in result.stdout + result.stderr for secret in SECRETS)
