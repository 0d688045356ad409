"""Secrets never leave the process: one function redacts a configuration wherever it is shown.

A configuration may carry an API key in an engine's options or credentials inside a URL
(``https://user:pass@host``, ``...?api_key=...``, a pre-signed ``X-Amz-Signature``). Reports,
manifests, run folders and logs are files people share, so everything that shows or stores a
configuration passes it through :func:`redact` first: the report (HTML, Markdown, JSON), the
stage manifests and the run folder's ``config.yaml``. Keys in the environment (``api_key_env``
names a variable, it does not hold a key) are never read into a configuration in the first place.
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


def is_secret_name(name: str) -> bool:
    """Whether a key named ``name`` holds a secret (``api_key``, ``token``, ``password``, ...)."""
    words = [w.lower() for w in re.split(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])", str(name)) if w]
    if not words or words[-1] in PUBLIC_SUFFIXES:
        return False
    return any(word.endswith(SECRET_WORDS) for word in words)


def redact_url(url: str) -> str:
    """``url`` with its user-info and any secret-named query parameter replaced by <redacted>."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs],
                              safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` with its credentials redacted (for free text and log lines)."""
    return _URL.sub(lambda match: redact_url(match.group(1)), text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (mappings, lists, scalars) with every secret replaced by <redacted>.

    A value is secret when its key's name says so (:func:`is_secret_name`), and credentials
    inside any URL-looking string are redacted wherever they appear.

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
