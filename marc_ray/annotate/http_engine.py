"""The OpenAI-compatible HTTP judge engine: hosted judges and ``vllm serve``.

*Choice* mode asks for one token and reads the **top log-probabilities of the answer token**:

* ``/v1/completions`` with ``max_tokens=1, logprobs=k`` (``vllm serve``, completion models);
* ``/v1/chat/completions`` with ``logprobs=true, top_logprobs=k`` (chat-only hosted models; the
  run's prefix and suffix are sent as one user message, so the answer is the reply's first
  token).

The probability of each label is summed over its spellings ("A" and " A"), the two masses are
renormalised into P(first), and their raw sum is kept as ``label_mass``. A label absent from the
top k counts as mass 0 (its true mass is below the k-th value); when neither label is in the
top k the run is recorded as ``missing: labels not in top-k logprobs``.

*Likelihood* mode (completions only) sends each continuation with ``echo=true, logprobs=0,
max_tokens=1`` and reads the prompt tokens' log-probabilities that the server echoes back
(vLLM and OpenAI-style completion servers support it; chat endpoints do not).

With ``tokenizer`` set (a local model folder or spec), prompts are sent as **token ids** built by
:func:`marc_ray.annotate.engine.encode_parts` (the OpenAI protocol accepts token arrays), so a
``vllm serve`` judge sees exactly the tokens of the local engines; without it they are sent as
text and the server tokenises them.

The API key is read from the environment variable named by ``api_key_env`` when a request is
made; it is never stored in a manifest, printed, logged, or put into an error message. A
``base_url`` with ``user:password@`` is refused (urllib would not authenticate with it anyway),
and every error this engine raises is redacted here, before Ray logs it: a server's error body
that echoes the ``Authorization`` header or a key is scrubbed (``contracts.redact.redact_text``).
Transient failures (429, 5xx, timeouts, refused connections) are retried with exponential
backoff and jitter (``Retry-After`` honoured); a 400 answer to one request records that run as
missing with the server's reason; other errors (401, 403, 404, ...) stop the job with a message
that says what to check. Requests run concurrently on a bounded thread pool.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ..contracts.errors import InfrastructureError
from ..contracts.redact import has_userinfo, redact_text, redact_url
from .config import AnnotateConfig
from .engine import RunResult, encode_parts, p_first_from_label_probs, p_first_from_loglik

ENDPOINTS = {
    "completions": "/completions: prompts as text or token ids; choice and likelihood modes",
    "chat": "/chat/completions: one user message; choice mode only (hosted chat models)",
}
RETRY_STATUS = (429, 500, 502, 503, 504)  # rate limits and transient server failures
MISSING_TOP_K = "labels not in top-k logprobs"


class HttpJudgeError(InfrastructureError):
    """The server refused the judge's requests for good, or retries ran out (exit code 5; the
    message is redacted, and finished shards are kept: rerun to resume)."""

    def __init__(self, message: str):
        super().__init__(redact_text(message))  # redacted here, before Ray logs it


HTTP_OPTIONS = ("base_url", "endpoint", "api_key_env", "top_logprobs", "concurrency", "timeout",
                "max_retries", "backoff", "tokenizer")  # engine_options of engine: http


class HttpEngine:
    """A judge behind an OpenAI-compatible HTTP API (see the module docstring).

    Parameters
    ----------
    base_url : str, default="http://localhost:8000/v1"
        The API root, up to and including ``/v1``.
    model : str, default=""
        The model name the server knows (``vllm serve``: the folder or ``--served-model-name``).
    endpoint : {"completions", "chat"}, default="completions"
    api_key_env : str, default=""
        Name of the environment variable holding the API key ("" = send no key).
    top_logprobs : int, default=20
        k for choice mode (vLLM allows up to its ``--max-logprobs``, 20 by default; OpenAI
        completions 5, chat 20).
    concurrency : int, default=8
        Requests in flight at once (bounded thread pool).
    timeout : float, default=60.0
        Seconds per request.
    max_retries : int, default=4
        Retries of a transient failure before giving up (the job then fails and can resume).
    backoff : float, default=0.5
        First retry delay in seconds; doubled each retry, with jitter, at most 30 s.
    beta : float, default=5.0
        Likelihood mode: P = sigmoid(beta · ΔLL).
    tokenizer : str or None, default=None
        A local model folder or spec whose tokenizer builds token-id prompts (recommended for
        ``vllm serve``); None sends text.

    Attributes
    ----------
    n_requests_ : int
        HTTP requests answered so far.
    n_retries_ : int
        Retries made so far.
    """

    name = "http"

    def __init__(self, base_url: str = "http://localhost:8000/v1", model: str = "", *,
                 endpoint: str = "completions", api_key_env: str = "", top_logprobs: int = 20,
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 4,
                 backoff: float = 0.5, beta: float = AnnotateConfig.beta, tokenizer: str | None = None):
        self.base_url = base_url
        self.model = model
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.top_logprobs = top_logprobs
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.beta = beta
        self.tokenizer = tokenizer

    def __repr__(self) -> str:  # the key itself is never an attribute; show where it comes from
        return (f"HttpEngine(base_url={self.base_url!r}, model={self.model!r}, "
                f"endpoint={self.endpoint!r}, api_key_env={self.api_key_env!r})")

    @classmethod
    def from_config(cls, config) -> "HttpEngine":
        """From an ``AnnotateConfig``: ``model``, ``beta`` and ``engine_options`` (``base_url``,
        ``endpoint``, ``api_key_env``, ``top_logprobs``, ``concurrency``, ``timeout``,
        ``max_retries``, ``backoff``, ``tokenizer``)."""
        options = dict(getattr(config, "engine_options", None) or {})
        known = set(HTTP_OPTIONS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"http engine: unknown engine_options {unknown}; "
                             f"known: {sorted(known)}")
        engine = cls(model=str(config.model), beta=float(config.beta), **options)
        return engine.check(getattr(config, "mode", None))

    # ---- setup -------------------------------------------------------------------------------
    def check(self, mode: str | None = None) -> "HttpEngine":
        """Validate the settings (and the mode, when given) before any request; returns self.

        Raises
        ------
        ValueError
            Naming the setting, the allowed values and the fix.
        """
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"http engine: endpoint must be one of {sorted(ENDPOINTS)}, "
                             f"got {self.endpoint!r}")
        check_base_url(self.base_url)
        if not self.model:
            raise ValueError("http engine: model must name the served model (the server's "
                             "/v1/models lists them)")
        for name in ("top_logprobs", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"http engine: {name} must be an integer >= 1, got {value!r}")
        if mode == "likelihood" and self.endpoint != "completions":
            raise ValueError("http engine: likelihood mode needs prompt log-probabilities, which "
                             "only the completions endpoint returns; set endpoint='completions' "
                             "or use mode='choice'")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ValueError(f"http engine: the environment variable {self.api_key_env} (named "
                             f"by api_key_env) is not set; export it with the API key")
        return self

    def _ready(self) -> None:
        if hasattr(self, "pool_"):
            return
        self.check()
        self.tokenizer_ = None
        if self.tokenizer:
            from .models import load_tokenizer

            self.tokenizer_ = load_tokenizer(self.tokenizer)
        self.pool_ = ThreadPoolExecutor(max_workers=self.concurrency,
                                        thread_name_prefix="marc-ray-http")
        self.n_requests_ = 0
        self.n_retries_ = 0
        self._count_lock = threading.Lock()  # counters are updated from the pool's threads
        self._jitter = random.Random()  # backoff jitter only; it never touches a result

    def close(self) -> None:
        """Stop the thread pool."""
        pool = self.__dict__.pop("pool_", None)
        if pool is not None:
            pool.shutdown(wait=True)

    # ---- public ------------------------------------------------------------------------------
    def judge(self, runs: Sequence[dict[str, Any]]) -> list[RunResult]:
        """Results of ``runs`` (run-row dicts, see :mod:`marc_ray.annotate.engine`), in order."""
        self._ready()
        for run in runs:
            if run["mode"] == "likelihood" and self.endpoint != "completions":
                self.check("likelihood")
        return list(self.pool_.map(self._judge_one, runs))

    # ---- one run -----------------------------------------------------------------------------
    def _prompt(self, parts: Sequence[str]) -> tuple[Any, list[int]]:
        """Token ids (with a tokenizer) or text, and each part's end (tokens or characters)."""
        if self.tokenizer_ is not None:
            return encode_parts(self.tokenizer_, parts)
        ends, total = [], 0
        for part in parts:
            total += len(part)
            ends.append(total)
        return "".join(parts), ends

    def _judge_one(self, run: dict[str, Any]) -> RunResult:
        if run["mode"] == "choice":
            return self._choice(run)
        if run["mode"] == "likelihood":
            return self._likelihood(run)
        raise ValueError(f"run {run.get('id')!r}/{run.get('run')}: mode must be 'choice' or "
                         f"'likelihood', got {run['mode']!r}")

    def _choice(self, run: dict[str, Any]) -> RunResult:
        labels = (str(run["label_first"]), str(run["label_second"]))
        if self.endpoint == "chat":
            body = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                    "top_logprobs": self.top_logprobs,
                    "messages": [{"role": "user", "content": run["prefix"] + run["suffix"]}]}
            answer = self._post("/chat/completions", body)
            if isinstance(answer, str):
                return RunResult.missing(answer)
            top = _chat_top_logprobs(answer)
        else:
            prompt, _ = self._prompt([run["prefix"], run["suffix"]])
            body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                    "logprobs": self.top_logprobs}
            answer = self._post("/completions", body)
            if isinstance(answer, str):
                return RunResult.missing(answer)
            top = _completion_top_logprobs(answer)
        return choice_from_top_logprobs(top, labels)

    def _likelihood(self, run: dict[str, Any]) -> RunResult:
        means = []
        for key in ("continuation_first", "continuation_second"):
            prompt, ends = self._prompt([run["prefix"], run["suffix"], run[key]])
            if ends[2] <= ends[1]:
                return RunResult.missing(f"empty {key}")
            body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                    "echo": True, "logprobs": 0}
            answer = self._post("/completions", body)
            if isinstance(answer, str):
                return RunResult.missing(answer)
            value = _mean_echo_loglik(answer, ends[1], ends[2],
                                      by_tokens=self.tokenizer_ is not None)
            if isinstance(value, str):
                return RunResult.missing(value)
            means.append(value)
        return p_first_from_loglik(means[0], means[1], self.beta)

    # ---- transport ---------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | str:
        """POST with retries; the parsed answer, or a reason string for a 400 (this run only)."""
        url = self.base_url.rstrip("/") + path
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"http engine: the environment variable {self.api_key_env} "
                                 f"(named by api_key_env) is not set")
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            delay = min(self.backoff * 2 ** attempt, 30.0) * (0.5 + self._jitter.random())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = json.loads(response.read())
                with self._count_lock:
                    self.n_requests_ += 1
                return answer
            except urllib.error.HTTPError as error:
                detail = _error_detail(error, secret=headers.get("Authorization", "")[7:])
                if error.code == 400:
                    return f"http 400: {detail}"
                if error.code not in RETRY_STATUS:
                    hint = {401: "check the API key in the variable named by api_key_env",
                            403: "the key lacks access to this model",
                            404: "check base_url (it ends with /v1) and the model name"}
                    raise HttpJudgeError(f"{url} answered {error.code}: {detail}; "
                                         f"{hint.get(error.code, 'see the server log')}") from None
                problem = f"{error.code}: {detail}"
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = min(float(retry_after), 60.0)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                problem = redact_text(f"{type(error).__name__}: {getattr(error, 'reason', error)}")
            if attempt == self.max_retries:
                raise HttpJudgeError(f"{url} failed after {self.max_retries + 1} attempts (last: "
                                     f"{problem}); the server is down or overloaded") from None
            with self._count_lock:
                self.n_retries_ += 1
            time.sleep(delay)
        raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Reading answers (pure functions over the parsed JSON)
# ---------------------------------------------------------------------------------------------

def check_base_url(base_url: str) -> None:
    """Refuse a ``base_url`` that is not http(s) or that carries ``user:password@`` (the key
    comes from the environment, named by ``api_key_env``); the message never holds the password.
    """
    if not str(base_url).startswith(("http://", "https://")):
        raise ValueError(f"http engine: base_url must start with http:// or https://, got "
                         f"{redact_url(str(base_url))!r} (e.g. http://localhost:8000/v1)")
    if has_userinfo(str(base_url)):
        raise ValueError(f"http engine: base_url {redact_url(str(base_url))!r} carries "
                         f"credentials (user:password@); remove them, export the API key in an "
                         f"environment variable and name it in engine_options.api_key_env")


def _error_detail(error: urllib.error.HTTPError, secret: str = "") -> str:
    """The server's reason, one line, scrubbed: an error body may echo the request's
    ``Authorization`` header or a key, and this text reaches the terminal and Ray's logs."""
    try:
        text = error.read().decode(errors="replace")
        try:
            message = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            message = text
        if isinstance(message, dict):
            message = message.get("message", message)
        detail = " ".join(str(message).split())
        if secret:  # the key itself, whatever its shape, wherever the server echoed it
            detail = detail.replace(secret, "<redacted>")
        detail = redact_text(detail)  # whole, before it is cut short
    except Exception:  # noqa: BLE001 - any unreadable body: fall back to the reason phrase
        detail = str(error.reason)
    return redact_text(detail)[:300]


def _completion_top_logprobs(answer: dict[str, Any]) -> dict[str, float] | None:
    """{token text: log-probability} of the first generated token (completions)."""
    try:
        top = answer["choices"][0]["logprobs"]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    return dict(top[0]) if top else None


def _chat_top_logprobs(answer: dict[str, Any]) -> dict[str, float] | None:
    """{token text: log-probability} of the reply's first token (chat completions)."""
    try:
        content = answer["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if not content:
        return None
    return {entry["token"]: entry["logprob"] for entry in content[0].get("top_logprobs", [])}


def answer_top_logprobs(answer: dict[str, Any]) -> dict[str, float] | None:
    """{token text: log-probability} of the answer token of a completion or a chat completion
    (what a live request reads; the replay engine reads saved answers with it)."""
    return _chat_top_logprobs(answer) if _is_chat(answer) else _completion_top_logprobs(answer)


def _is_chat(answer: dict[str, Any]) -> bool:
    """A chat completion: its choice holds a message (a completion's holds text)."""
    try:
        return "message" in answer["choices"][0]
    except (KeyError, IndexError, TypeError):
        return False


def choice_from_top_logprobs(top: dict[str, float] | None, labels: tuple[str, str]) -> RunResult:
    """P(first) from the answer token's top log-probabilities (each label: "X" and " X" summed).

    Parameters
    ----------
    top : dict or None
        {token text: log-probability}; None when the server returned none.
    labels : (str, str)
        The labels of the first- and second-shown responses.
    """
    if top is None:
        return RunResult.missing("the server returned no top log-probabilities")
    masses = []
    for label in labels:
        spellings = {label, " " + label}
        masses.append(sum(math.exp(lp) for token, lp in top.items()
                          if token in spellings and lp is not None and math.isfinite(lp)))
    if masses[0] == 0.0 and masses[1] == 0.0:
        return RunResult.missing(MISSING_TOP_K)
    return p_first_from_label_probs(masses[0], masses[1])


def _mean_echo_loglik(answer: dict[str, Any], start: int, end: int, by_tokens: bool) -> float | str:
    """Mean log-probability of the continuation in an ``echo`` answer, or a reason.

    ``start``/``end`` are token positions (token-id prompts) or character offsets (text prompts,
    matched with ``text_offset``).
    """
    try:
        logprobs = answer["choices"][0]["logprobs"]
        values = logprobs["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        return "the server returned no prompt log-probabilities (echo unsupported)"
    if by_tokens:
        picked = values[start:end]
    else:
        offsets = logprobs.get("text_offset") or []
        picked = [v for v, offset in zip(values, offsets) if start <= offset < end]
    if not picked or any(v is None or not math.isfinite(v) for v in picked):
        return "non-finite or absent prompt log-probabilities"
    return sum(picked) / len(picked)
