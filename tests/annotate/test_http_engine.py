"""The HTTP engine: protocol handling against a scripted local server (fast), and a real
``vllm`` OpenAI-compatible server process on a tiny model (slow, one server start)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from http_servers import ScriptedServer, free_port
from marc_ray.annotate.http_engine import (HttpEngine, HttpJudgeError,
                                           choice_from_top_logprobs)

SECRET = "sk-test-never-print-me"


def completion(top: dict[str, float]) -> dict:
    return {"choices": [{"text": "A", "logprobs": {"tokens": ["A"], "token_logprobs": [-0.1],
                                                   "top_logprobs": [top]}}]}


def chat(top: dict[str, float]) -> dict:
    entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]
    return {"choices": [{"message": {"content": "A"}, "logprobs": {"content": [
        {"token": "A", "logprob": -0.1, "top_logprobs": entries}]}}]}


def choice_run(i: int = 0) -> dict:
    return {"id": f"q{i}", "run": i, "mode": "choice", "prefix": "Examples...\n",
            "suffix": "Response A: [[A]] yes\nResponse B: no\nBetter response: [[",
            "continuation_first": "", "continuation_second": "", "label_first": "A",
            "label_second": "B"}


TOP = {"A": math.log(0.2), " A": math.log(0.1), "B": math.log(0.3), "Hello": math.log(0.4)}


def engine(server, **options) -> HttpEngine:
    return HttpEngine(server.base_url, "judge", backoff=0.01, **options)


# ---- protocol -----------------------------------------------------------------------------------

def test_choice_sums_both_spellings_renormalises_and_keeps_the_mass():
    with ScriptedServer([(200, completion(TOP), None)]) as server:
        judge = engine(server, top_logprobs=5)
        (result,) = judge.judge([choice_run()])
    assert result.status == "ok"
    assert result.p_first == pytest.approx(0.3 / 0.6)
    assert result.label_mass == pytest.approx(0.6)
    body = server.requests[0]["body"]
    assert server.requests[0]["path"] == "/v1/completions"
    assert (body["max_tokens"], body["logprobs"], body["temperature"]) == (1, 5, 0.0)
    assert body["prompt"] == choice_run()["prefix"] + choice_run()["suffix"]  # text: no tokenizer


def test_labels_outside_the_top_k():
    with ScriptedServer([(200, completion({"Hello": -0.1, "The": -2.0}), None)]) as server:
        (result,) = engine(server).judge([choice_run()])
    assert result.status == "missing: labels not in top-k logprobs"
    assert math.isnan(result.p_first) and math.isnan(result.label_mass)
    # one label in the top k: the other's mass counts as 0 (it is below the k-th value)
    one = choice_from_top_logprobs({"B": math.log(0.25), "x": -0.5}, ("A", "B"))
    assert (one.status, one.p_first, one.label_mass) == ("ok", 0.0, pytest.approx(0.25))


def test_chat_endpoint_reads_the_first_reply_token():
    with ScriptedServer([(200, chat(TOP), None)]) as server:
        (result,) = engine(server, endpoint="chat").judge([choice_run()])
    assert result.p_first == pytest.approx(0.5)
    body = server.requests[0]["body"]
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["messages"] == [{"role": "user",
                                 "content": choice_run()["prefix"] + choice_run()["suffix"]}]


def test_server_error_then_success_is_retried():
    script = [(500, {"error": {"message": "overloaded"}}, None),
              (429, {"error": "slow down"}, {"Retry-After": "0"}),
              (200, completion(TOP), None)]
    with ScriptedServer(script) as server:
        judge = engine(server, concurrency=1)
        (result,) = judge.judge([choice_run()])
    assert result.p_first == pytest.approx(0.5)
    assert len(server.requests) == 3 and judge.n_retries_ == 2


def test_retries_run_out():
    with ScriptedServer([(503, {"error": "down"}, None)]) as server:
        judge = engine(server, max_retries=2)
        with pytest.raises(HttpJudgeError, match="failed after 3 attempts.*503"):
            judge.judge([choice_run()])
    assert len(server.requests) == 3


def test_a_refused_request_is_a_missing_run_and_auth_errors_stop(monkeypatch):
    monkeypatch.setenv("MARC_RAY_TEST_KEY", SECRET)
    with ScriptedServer([(400, {"error": {"message": "prompt too long"}}, None)]) as server:
        (result,) = engine(server, api_key_env="MARC_RAY_TEST_KEY").judge([choice_run()])
    assert result.status == "missing: http 400: prompt too long"
    assert server.requests[0]["authorization"] == f"Bearer {SECRET}"
    with ScriptedServer([(401, {"error": {"message": "invalid key"}}, None)]) as server:
        judge = engine(server, api_key_env="MARC_RAY_TEST_KEY")
        with pytest.raises(HttpJudgeError, match="401.*check the API key") as error:
            judge.judge([choice_run()])
    assert SECRET not in str(error.value) and SECRET not in repr(judge)
    assert len(server.requests) == 1  # not retried


def test_missing_key_variable_and_bad_settings(monkeypatch):
    monkeypatch.delenv("MARC_RAY_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="MARC_RAY_NO_SUCH_KEY .* is not set"):
        HttpEngine("http://127.0.0.1:9/v1", "judge", api_key_env="MARC_RAY_NO_SUCH_KEY").check()
    with pytest.raises(ValueError, match="endpoint must be one of"):
        HttpEngine("http://127.0.0.1:9/v1", "judge", endpoint="embeddings").check()
    with pytest.raises(ValueError, match="likelihood mode needs prompt log-probabilities"):
        HttpEngine("http://127.0.0.1:9/v1", "judge", endpoint="chat").check("likelihood")
    with pytest.raises(ValueError, match="base_url must start with http"):
        HttpEngine("localhost:8000", "judge").check()


def test_likelihood_reads_echoed_prompt_logprobs():
    run = {**choice_run(), "mode": "likelihood", "prefix": "Q: 2+2?", "suffix": "\nA:",
           "continuation_first": " 4", "continuation_second": " five"}

    def echo(request):
        # text prompt: tokens are characters here; the continuation starts at len(prefix+suffix)
        text = request["body"]["prompt"]
        value = -0.5 if text.endswith(" 4") else -2.0
        return {"choices": [{"logprobs": {"tokens": list(text) + ["x"],
                                          "token_logprobs": [None] + [value] * len(text),
                                          "text_offset": list(range(len(text) + 1))}}]}

    with ScriptedServer([(200, echo, None)]) as server:
        (result,) = engine(server, beta=2.0).judge([run])
    assert result.status == "ok"
    assert result.p_first == pytest.approx(1.0 / (1.0 + math.exp(-2.0 * 1.5)))
    assert all(r["body"]["echo"] is True for r in server.requests)


# ---- a real vLLM server process -----------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """``python -m vllm.entrypoints.openai.api_server`` on a tiny model, on a free port."""
    pytest.importorskip("vllm")
    from marc_ray.annotate.models import make_tiny_model
    from marc_ray.annotate.vllm_engine import engine_env

    model = make_tiny_model(tmp_path_factory.mktemp("tiny-served"), seed=1, hidden_size=256)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, **engine_env(gpu=False)}
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
               # the whole vocabulary may be asked for: a random model's label tokens are
               # nowhere near its top 20, and the test compares exact probabilities
               "--max-logprobs", "-1", "--disable-log-stats"]
    with open(log, "w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 420
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm server exited ({process.returncode}):\n"
                            f"{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm server not healthy after 420 s:\n{log.read_text()[-3000:]}")
            time.sleep(1.0)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": model}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _choice_rows(tokenizer) -> list[dict]:
    import pyarrow as pa

    from marc_ray.annotate.annotators import build_annotators, read_pool, run_layout
    from marc_ray.annotate.prompts import PromptBuilder, get_template

    from annotate_toys import arithmetic_rows

    items = [{"id": f"q{i}", "instruction": f"What is {i} + 7?", "response_a": str(i + 7),
              "response_b": f"[[A]] {i + 9}"} for i in range(2)]
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("p", 0, 6)))
    builder = PromptBuilder(get_template("default"), build_annotators(pool, 1, 2),
                            run_layout(1, 2), "choice", ("A", "B"), tokenizer)
    return builder.runs(items)


@pytest.mark.slow
def test_real_vllm_server_matches_the_local_engine(vllm_server):
    from marc_ray.annotate.models import load_tokenizer
    from marc_ray.annotate.transformers_engine import TransformersEngine

    model = vllm_server["model"]
    runs = _choice_rows(load_tokenizer(model))
    local = TransformersEngine(model, device="cpu", batch_size=8).judge(runs)
    vocab = len(load_tokenizer(model))
    # token-id prompts (identical tokenisation) and the whole vocabulary: exact agreement
    full = HttpEngine(vllm_server["base_url"], "tiny", tokenizer=model, top_logprobs=vocab,
                      concurrency=4, timeout=120).judge(runs)
    assert [r.status for r in full] == ["ok"] * len(runs)
    diff = max(abs(r.p_first - e.p_first) for r, e in zip(full, local))
    mass = max(abs(r.label_mass / e.label_mass - 1.0) for r, e in zip(full, local))
    print(f"\nvllm serve (HTTP) vs transformers on {len(runs)} choice runs: max |dP| = {diff:.2e}, "
          f"max relative label-mass difference = {mass:.2e}")
    assert diff < 1e-5 and mass < 1e-4
    # the top 20 of a random model holds no label token: every run is recorded as missing
    top20 = HttpEngine(vllm_server["base_url"], "tiny", tokenizer=model,
                       top_logprobs=20).judge(runs)
    assert {r.status for r in top20} == {"missing: labels not in top-k logprobs"}
