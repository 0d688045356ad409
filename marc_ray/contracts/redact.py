"""Secrets never leave the process: one module redacts whatever is shown, logged or stored.

A configuration may carry an API key in an engine's options or credentials inside a URL
(``https://user:pass@host``, ``...?api_key=...``, a pre-signed ``X-Amz-Signature``), and a
server's error body may echo the ``Authorization`` header it received. Reports, manifests, run
folders, error lines and logs are things people share, so:

* :func:`redact` redacts a configuration (mappings, lists, scalars) before it is shown or stored:
  the report (HTML, Markdown, JSON), the stage manifests and the run folder's ``config.yaml``;
* :func:`redact_text` redacts free text (every error line the CLI prints, every exception an
  engine raises, every log line): credentials in URLs, ``Authorization`` / ``Bearer`` values,
  ``name: value`` pairs whose name says secret, and key-shaped strings (``sk-…``, ``hf_…``, ...);
* :func:`shown` is how an error message shows a configured value: a mapping by its key names
  only, so an ``api_key`` mistakenly put into ``engine_options`` is never echoed.

Keys in the environment (``api_key_env`` names a variable, it does not hold a key) are never read
into a configuration in the first place.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
# A key is secret when one of the words of its name (split at "_", "-", "." and camelCase)
# ends with one of these: api_key, apiKey, access_token, aws_secret_access_key, password,
# X-Amz-Signature, Authorization. Word-wise, so `tokenizer` and `max_tokens` stay visible.
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "pwd", "credential",
                "credentials", "signature", "authorization", "auth")
# A name ending in one of these names where a secret is kept, not the secret itself
# (`api_key_env` is the environment variable's name).
PUBLIC_SUFFIXES = ("env", "file", "path")
# a URL ends at a space, a quote or an angle bracket, except inside a <redacted> already there
# (so redacting a message twice, as the CLI does with an error that names a URL, changes nothing)
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*(?:<redacted>[^\s'\"<>]*)*)")
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)(.*)", re.S)
# the end of a URL's user-info: an "@" followed by a host (name, IPv4 or [IPv6]), an optional
# port, then the end of the authority; the password before it may hold "#", "/", "?" and "@"
_AT_HOST = re.compile(r"@(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d*)?(?=[/?#]|$)")
# Strings shaped like the keys of common providers (redacted wherever they appear)
_KEY_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?:sk|pk|rk)-[A-Za-z0-9_-]{6,}"                   # OpenAI, Anthropic (sk-ant-), ...
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{6,}"      # Stripe
    r"|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"  # GitHub
    r"|hf_[A-Za-z0-9]{16,}"                             # Hugging Face
    r"|xox[abprs]-[A-Za-z0-9-]{8,}"                     # Slack
    r"|A(?:KIA|SIA)[0-9A-Z]{16}"                        # AWS access key id
    r"|AIza[0-9A-Za-z_-]{30,}"                          # Google
    r"|eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"  # a JWT
    r")")
# "Bearer <token>" (and Basic / Token): the credential of an Authorization header
_SCHEME_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token)(\s+)(?!<redacted>)[^\s'\"]+", re.I)
# an Authorization header written as a header line: its whole value, to the end of the line
_AUTH_HEADER = re.compile(r"\b((?:proxy-)?authorization)(\s*:\s*)(?![\s'\"])(?!<redacted>)[^\r\n'\"]+",
                          re.I)
# name <: or => value, the value quoted or up to a separator; the name decides (is_secret_name)
_ASSIGNMENT = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>['\"]?\s*[:=]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|"
    r"(?:(?:Bearer|Basic|Token)\s+)?(?!<redacted>|\.\.\.)[^\s'\"][^\s'\",;}&\]]*)", re.I)


def is_secret_name(name: str) -> bool:
    """Whether a key named ``name`` holds a secret (``api_key``, ``token``, ``password``, ...)."""
    words = [w.lower() for w in re.split(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])", str(name)) if w]
    if not words or words[-1] in PUBLIC_SUFFIXES:
        return False
    return any(word.endswith(SECRET_WORDS) for word in words)


def split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme://, user-info or None, the rest)`` of ``url``, parsed so that a password holding
    ``#``, ``/``, ``?``, ``@`` or ``%`` is found whole (``urllib`` stops at the first ``#``).

    The user-info ends at the last ``@`` that is followed by a host and the end of the authority.
    An ``@`` inside a path (``https://host/@name``) is not user-info: there the part before it
    holds a ``/`` but no ``:``, and what follows it is no host name (no dot).
    """
    match = _SCHEME.fullmatch(url)
    if not match:
        return "", None, url
    scheme, rest = match.groups()
    ends = list(_AT_HOST.finditer(rest))
    if not ends:
        return scheme, None, rest
    userinfo = rest[:ends[-1].start()]
    host = ends[-1].group(0)[1:]
    path_like = scheme.lower().startswith("http") and "/" in userinfo and ":" not in userinfo \
        and "." not in host and not host.startswith(("localhost", "["))
    if not userinfo or path_like:
        return scheme, None, rest
    return scheme, userinfo, rest[ends[-1].start() + 1:]


def has_userinfo(url: str) -> bool:
    """Whether ``url`` carries ``user[:password]@`` (credentials belong in the environment)."""
    return split_userinfo(str(url))[1] is not None


def redact_url(url: str) -> str:
    """``url`` with its user-info and any secret-named query parameter replaced by <redacted>."""
    scheme, userinfo, rest = split_userinfo(url)
    if userinfo is not None:
        url = f"{scheme}{REDACTED}@{rest}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs],
                              safe="<>")
            return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return url


def _redact_assignment(match: re.Match) -> str:
    if not is_secret_name(match["name"]):
        return match[0]
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['name']}{match['sep']}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """``text`` with every credential it holds replaced by <redacted> (for free text, error lines,
    exception messages and log lines; redacting twice changes nothing).

    Redacted: the user-info and secret query parameters of every URL, the credential after
    ``Bearer`` / ``Basic`` / ``Token``, the value of a pair whose name says secret
    (``api_key=...``, ``"Authorization": "..."``, ``'password': '...'``), and key-shaped strings.
    """
    text = _URL.sub(lambda match: redact_url(match.group(1)), str(text))
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _ASSIGNMENT.sub(_redact_assignment, text)
    return _KEY_SHAPES.sub(REDACTED, text)


def shown(value: Any) -> str:
    """How an error message shows a configured value: a mapping by its key names only (its
    values may be secrets put in the wrong place), anything else as its redacted repr.

    >>> shown({"api_key": "sk-1234567890", "base_url": "http://h/v1"})
    "{'api_key': ..., 'base_url': ...}"
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: ..." for key in value) + "}"
    return redact_text(repr(redact(value)))


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (mappings, lists, scalars) with every secret replaced by <redacted>.

    A value is secret when its key's name says so (:func:`is_secret_name`), and strings are
    passed through :func:`redact_text` (credentials in URLs, key-shaped strings).

    Examples
    --------
    >>> redact({"engine_options": {"api_key": "sk-1", "base_url": "https://u:p@h/v1"}})
    {'engine_options': {'api_key': '<redacted>', 'base_url': 'https://<redacted>@h/v1'}}
    """
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, key) for v in value)
    if key and is_secret_name(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value
