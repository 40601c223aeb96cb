"""Secrets and local paths kept out of what others read: messages, log lines, pages, exports and reports.

- :func:`redact_url`: a store URL with its password and secret query values masked; a local database
  file (SQLite, or any URL without a host) by its file name only.
- :func:`redact_path`: a path by its file name only.
- :func:`public_weights`: ``file:/a/b/x.weights.h5`` as ``file:x.weights.h5 (sha256 1a2b3c4d)``.
- :func:`redact_text`: a free-form message (an exception text) with URL credentials, ``password=...``
  pairs, the configured store's secrets and absolute paths (the home folder, the temp folder,
  ``TRANSFERLAB_HOME``, any other) taken out.
- :func:`public_runs`: a runs frame as a stranger may see it (the hosted read-only dashboard, a report).

URLs are split here rather than with ``urllib.parse`` or ``sqlalchemy.make_url``: both end the password at
the first ``@`` (or ``/``), so a password holding an unescaped ``@`` would show its tail as the "host". Here
the credentials end at the last ``@`` that a host follows: a password may hold ``@``, ``/`` or ``?``, and when
a query value holds an ``@`` too the worst case is a masked host, never a shown password.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MASK = "***"
#: what stands in for the folders of a path that was shortened to its file name
ELLIPSIS = "…"
#: query parameters and ``key=value`` words whose value is a secret (``password``, ``sslkey``, ``token``, ...)
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|cred|auth|signature", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://(.*)", re.DOTALL)
#: what follows the @ that ends a URL's credentials: a host (name, address, [IPv6], :port, a list) and then
#: the path, the query or the end
_HOST_THEN = re.compile(r"[^@/?#&=\s]*(?=[/?#]|$)")
#: a secret shorter than this is not searched for as plain text: it would mask ordinary words
_MIN_LITERAL_SECRET = 4

# One segment of a path: anything but white space, quotes, brackets of markup, list separators and slashes.
_SEG = r"[^\s\"'`<>|,;:/\\]+"
# A URL runs to white space or a double quote: a password may hold ' , ; and even an unescaped @ or /.
_URL = r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"<>`]*"
_KEYWORD = (r"(?i:\b(?:password|passwd|pwd|secret|token|api[_-]?key)\b)(?:\s*[=:]\s*)"
            r"(?![A-Za-z][A-Za-z0-9+.\-]*://)(?:\"[^\"]*\"|'[^']*'|\S+)")  # to the next space (masking more is safe); a URL value is the URL's
# Absolute paths of two or more segments (one segment, ``/tmp``, tells nothing), POSIX, ``~`` or Windows.
_POSIX = rf"(?<![\w.\-~/\\{ELLIPSIS}])(?:~[\w.\-]*|{ELLIPSIS})?(?:/{_SEG}){{2,}}/?"
_WINDOWS = rf"(?<![\w])[A-Za-z]:(?:[\\/]{_SEG}){{2,}}[\\/]?"
_URLS = re.compile(_URL)
_TOKENS = re.compile(rf"(?P<keyword>{_KEYWORD})|(?P<path>{_POSIX}|{_WINDOWS})")
_TOKENS_NO_PATHS = re.compile(rf"(?P<keyword>{_KEYWORD})")


def redact_path(path: str | os.PathLike) -> str:
    """A path by its file name only: ``/home/me/models/x.weights.h5`` -> ``x.weights.h5`` (POSIX or Windows
    separators; a ``file:`` prefix goes too). A text without separators is returned as it is."""
    text = os.fspath(path)
    parts = [p for p in re.split(r"[\\/]+", text) if p]
    if len(parts) <= 1 and not re.search(r"[\\/]", text):
        return text
    name = parts[-1] if parts else text
    return name.removeprefix("file:")


def _split_url(url: str) -> tuple[str, str | None, str | None, str, str, str] | None:
    """(scheme, user, password, host[:port], path, query) of ``scheme://...``, or None for a text without a
    scheme. The credentials end at the last ``@`` a host follows (see the module docstring); when that leaves
    them unclear, more is masked (the user, or the host and the first query value)."""
    match = _SCHEME.fullmatch(url)
    if not match:
        return None
    scheme, rest = match.groups()
    userinfo, rest_after = None, rest
    ats = [m.start() for m in re.finditer("@", rest)]
    if ats:
        # The credentials end at the last @ that a host follows (a query value may hold an @ too); with none
        # such, at the last @ of all. Either way a password's own @ or / stays inside the credentials.
        end = next((i for i in reversed(ats) if _HOST_THEN.match(rest, i + 1)), ats[-1])
        userinfo, rest_after = rest[:end], rest[end + 1:]
    user, password = None, None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        password = secret if colon else None
        if not re.fullmatch(r"[^/?#&=@\s]*", user):  # not a user name: the credentials swallowed more
            user, password = MASK, None
        if "?" in userinfo:
            # A password with a ? in it, or an @ in a query value: what follows the @ may be the tail of a
            # secret value, up to the next parameter. Mask it; the parameters after it are parsed as a query.
            return scheme, user, password, MASK, "", rest_after.partition("&")[2]
    authority, after = re.match(r"([^/?#]*)(.*)", rest_after, re.DOTALL).groups()
    path, _, query = after.partition("?")
    return scheme, user, password, authority, path, query


def _redact_query(query: str, paths: bool) -> str:
    parts = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        if eq and _SECRET_NAME.search(unquote(name)):
            value = MASK
        elif eq and paths and re.search(r"[\\/]", unquote(value)):
            value = redact_path(unquote(value))
        parts.append(name + eq + value)
    return "&".join(parts)


def _redact_url(url: str, paths: bool = True) -> str:
    parsed = _split_url(url)
    if parsed is None:
        return redact_path(url) if paths and re.search(r"[\\/]", url) else url
    scheme, user, password, authority, path, query = parsed
    local = authority == "" and user is None  # scheme:///path: a file on this machine
    if paths and scheme.lower().startswith("sqlite"):
        name = redact_path(path.removeprefix("/").removeprefix("file:")) if path.strip("/") else ""
        return name or f"{scheme}://"  # sqlite:// is an in-memory database
    credentials = "" if user is None else user + (f":{MASK}" if password is not None else "") + "@"
    if paths and local and re.search(r"[\\/].*[\\/]", path):
        path = f"/{ELLIPSIS}/" + redact_path(path)
    text = f"{scheme}://{credentials}{authority}{path}"
    return text + ("?" + _redact_query(query, paths) if query else "")


def redact_url(url: str) -> str:
    """A URL fit for messages: ``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u:***@h/db?password=***``.

    The password and the values of secret-looking query parameters (``password``, ``sslkey``, ``token``, ...)
    are masked, and paths in query values cut to their file name. A SQLite URL becomes its file name only
    (``sqlite:////home/me/runs.sqlite`` -> ``runs.sqlite``), and so do the folders of any other URL without a
    host (``duckdb:////home/me/x.db`` -> ``duckdb:///…/x.db``). The user name and host are kept: they say
    which database is meant.
    """
    return _redact_url(str(url), paths=True)


def public_weights(weights: Any, sha256: Any = None) -> Any:
    """A weights value without local paths: ``file:/a/b/x.weights.h5`` -> ``file:x.weights.h5 (sha256 1a2b3c4d)``
    (the first 8 hex digits of the file's sha256 when known, which tell two files of one name apart).

    Names (``none``, ``imagenet``, ``run:<id>``) and values already public are returned unchanged, so the
    function may be applied twice; anything that is not a string (a missing value) is returned as it is.
    """
    if not isinstance(weights, str) or not re.search(r"[\\/]", weights):
        return weights
    prefix = "file:" if weights.startswith("file:") else ""
    label = prefix + redact_path(weights.removeprefix("file:"))
    if isinstance(sha256, str) and sha256:
        label += f" (sha256 {sha256[:8]})"
    return label


def _store_secrets() -> list[tuple[str, str]]:
    """(text, replacement) for the password and secret query values of ``TRANSFERLAB_STORE``, as written and
    URL-decoded: masked wherever they appear, even where a driver quotes them in a form no pattern recognises.

    A password with an unescaped ``@`` is split by the database driver at its first ``@``: the driver then
    names the rest as part of the host (``failed to resolve host 'rest@db.example.org'``), so each such tail
    followed by ``@`` is masked too, and each head is searched for as a secret of its own.
    """
    url = os.environ.get("TRANSFERLAB_STORE", "").strip()
    parsed = _split_url(url)
    if parsed is None:
        return []
    _, _, password, _, _, query = parsed
    values = [password] if password else []
    for item in query.split("&") if query else []:
        name, eq, value = item.partition("=")
        if eq and value and _SECRET_NAME.search(unquote(name)):
            values.append(value)
    # A "secret" that the redacted URL itself shows (a password equal to the user name or the scheme's
    # "postgres") is not searched for: masking it would garble every mention of the scheme.
    shown = redact_url(url)
    pairs = {(v, MASK) for value in values for v in (value, unquote(value))
             if len(v) >= _MIN_LITERAL_SECRET and v not in shown}
    for i in (m.start() for m in re.finditer("@", password or "")):
        head, tail = password[:i], password[i + 1:]
        if len(head) >= _MIN_LITERAL_SECRET and head not in shown:
            pairs.add((head, MASK))
        if tail:
            pairs.add((tail + "@", MASK + "@"))
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def _local_roots() -> list[str]:
    """The folders whose names say whose machine this is: ``TRANSFERLAB_HOME``, the home folder and the temp
    folder, as set and resolved, longest first. Matched as text before the general path pattern, so a folder
    name with spaces in it goes too."""
    candidates = [os.environ.get("TRANSFERLAB_HOME", ""), os.path.expanduser("~"), tempfile.gettempdir()]
    roots = set()
    for root in candidates:
        if not root or root.strip() in ("", "/", "~"):
            continue
        roots.add(root.rstrip("/\\") or root)
        try:
            roots.add(str(Path(root).expanduser().resolve()))
        except (OSError, RuntimeError):
            pass
    return sorted((r for r in roots if len(r) > 1), key=len, reverse=True)


class _Redactor:
    """Compiled once per call of the public functions (the environment can change between calls)."""

    def __init__(self, paths: bool):
        self.paths = paths
        self.secrets = _store_secrets()
        roots = _local_roots() if paths else []
        self.roots = (re.compile(r"(?<![\w.\-~\\])(?:" + "|".join(re.escape(r) for r in roots)
                                 + r")(?=$|[/\\\s\"'`<>|,;:)\]}])") if roots else None)
        self.tokens = _TOKENS if paths else _TOKENS_NO_PATHS

    def text(self, text: str) -> str:
        for secret, replacement in self.secrets:
            text = text.replace(secret, replacement)
        # URLs first, on their own: a path running into a URL must not leave the URL's credentials behind, and
        # a URL whose user name is a local root (`postgresql://root:pw@db`, run as root: home is /root) must
        # be masked before that root is cut out of it, which would leave the URL unrecognisable.
        text = _URLS.sub(lambda match: _redact_url(match.group(0), self.paths), text)
        if self.roots is not None:
            text = self.roots.sub(ELLIPSIS, text)
        return self.tokens.sub(self._token, text)

    def _token(self, match: re.Match) -> str:
        token = match.group(0)
        if match.lastgroup == "keyword":
            name, sep = re.match(r"(\w[\w-]*)(\s*[=:]\s*)", token).groups()
            return name + sep + MASK
        return f"{ELLIPSIS}/{redact_path(token)}"

    def value(self, value: Any) -> Any:
        """Strings anywhere in a JSON value, redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value


def redact_text(text: str, paths: bool = True) -> str:
    """A free-form message (an exception text, a log line) fit for others to read.

    Masks the password and secret query values of every ``scheme://`` URL in it (and cuts SQLite URLs to
    their file name), ``password=...``-style pairs, and the secrets of the configured ``TRANSFERLAB_STORE``
    wherever they appear. With ``paths=True`` (the default) absolute paths are cut to their file name:
    ``/home/me/models/x.weights.h5`` -> ``…/x.weights.h5``, and ``TRANSFERLAB_HOME``, the home folder and the
    temp folder become ``…`` even where their names hold spaces. ``paths=False`` keeps paths, for the local
    user's own screen. A password with white space in it cannot be told from the text around it; only the
    store's own is found then.
    """
    return _Redactor(paths).text(str(text))


def _loads(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


_WORKER_COLUMNS = ("worker", "worker_host", "worker_pid", "worker_started", "worker_pidspace")


def public_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A runs frame (``Store.runs_frame``) as strangers may see it; the frame passed in is left as it is.

    The columns naming the worker that held each run are dropped; ``weights`` becomes :func:`public_weights` with the sha256 prefix from the run's spec (or manifest), and
    the same in ``spec_json`` and ``manifest_json``; every other string, in the JSON columns (a task's data
    provenance names its folder) and in the text columns (``error``), goes through :func:`redact_text`. Runs
    that only differ by the folder of one weights file stay apart when the files differ (the sha256 prefix).
    """
    redactor = _Redactor(paths=True)
    # Which machine and process held a run (host name, pid, boot id) is nobody else's business.
    out = runs.drop(columns=[c for c in _WORKER_COLUMNS if c in runs]).copy()
    specs = [_loads(s) for s in out["spec_json"]] if "spec_json" in out else [None] * len(out)
    manifests = [_loads(m) for m in out["manifest_json"]] if "manifest_json" in out else [None] * len(out)

    def sha_of(spec: Any, manifest: Any) -> Any:
        return ((spec or {}).get("weights_sha256") if isinstance(spec, dict) else None) or (
            (manifest or {}).get("weights_sha256") if isinstance(manifest, dict) else None)

    shas = [sha_of(s, m) for s, m in zip(specs, manifests)]
    for column in out.columns:
        if out[column].dtype != object and str(out[column].dtype) not in ("string", "str"):
            continue
        if column == "weights":
            out[column] = [public_weights(w, sha) for w, sha in zip(out[column], shas)]
        elif column.endswith("_json"):
            out[column] = [_public_json(text, sha, redactor) for text, sha in zip(out[column], shas)]
        else:
            out[column] = [redactor.text(v) if isinstance(v, str) else v for v in out[column]]
    return out


def _public_json(text: Any, sha: Any, redactor: _Redactor) -> Any:
    value = _loads(text)
    if value is None:
        return text
    public = redactor.value(value)
    if isinstance(value, dict) and isinstance(value.get("weights"), str):
        public["weights"] = public_weights(value["weights"], value.get("weights_sha256") or sha)
    if public == value:
        return text  # unchanged: the stored text exactly
    return json.dumps(public, sort_keys=True, separators=(",", ":"))
