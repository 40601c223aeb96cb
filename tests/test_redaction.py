"""Secrets and local paths never reach the wrong eyes: transferlab.redact, the CLI's messages, and the read-only
dashboard (every page, its downloads and the HTML report) over a run whose weights are a local file."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import string
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from transferlab.redact import (
    ELLIPSIS,
    MASK,
    public_runs,
    public_weights,
    redact_path,
    redact_text,
    redact_url,
)

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "dashboard" / "views"

# Characters a user may well put in a password, escaped or not (RFC 3986 userinfo, plus @ / ? #).
PASSWORD_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%@/?#"
NAME_CHARS = string.ascii_lowercase + string.digits
SEGMENT_CHARS = string.ascii_letters + string.digits + "-_.()[]{}+=!@#$%^&*~"

passwords = st.text(PASSWORD_CHARS, min_size=6, max_size=24)
names = st.text(NAME_CHARS, min_size=1, max_size=10)
segments = st.text(SEGMENT_CHARS, min_size=3, max_size=12)


def _leaks(secret: str, output: str, context: str, window: int = 5) -> bool:
    """Whether ``output`` shows ``secret`` or any ``window`` characters of it that ``context`` (the text
    around the secret) does not explain: a partial leak counts."""
    if secret in output:
        return True
    pieces = {secret[i:i + window] for i in range(len(secret) - window + 1)}
    return any(p in output and p not in context and p not in MASK + ELLIPSIS for p in pieces)


# -------------------------------------------------------------------------------------------- redact_url

@given(scheme=st.sampled_from(["postgresql", "postgresql+psycopg", "mysql+pymysql", "mssql+pyodbc"]),
       user=names, password=passwords, host=names, port=st.integers(1, 65535), db=names,
       query=st.sampled_from(["", "?sslmode=require", "?application_name=tl&connect_timeout=5"]))
def test_redact_url_never_shows_the_password(scheme, user, password, host, port, db, query):
    template = f"{scheme}://{user}:{{}}@{host}:{port}/{db}{query}"
    context = template.format("")
    assume(password not in context)
    out = redact_url(template.format(password))
    assert not _leaks(password, out, context), out
    if "?" not in password:  # a ? in a password makes the host uncertain: it is masked too then
        assert out == template.format(MASK)  # and keeps what says which database it is


@given(name=st.sampled_from(["password", "sslpassword", "PASSWORD", "token", "api_key", "sslkey"]),
       secret=st.text(string.ascii_letters + string.digits + "-._~!$'()*+,;:@/", min_size=6, max_size=24),
       user=names, host=names)
def test_redact_url_masks_secret_query_values(name, secret, user, host):
    template = f"postgresql://{user}@{host}/db?sslmode=require&{name}={{}}&application_name=tl"
    assume(secret not in template.format(""))
    out = redact_url(template.format(secret))
    assert not _leaks(secret, out, template.format("")), out
    if "@" not in secret:  # an @ in a query value may be taken for the end of credentials: more is masked then
        assert out == template.format(MASK)


@pytest.mark.parametrize("url, expected", [
    ("sqlite:////home/alice/private/runs.sqlite", "runs.sqlite"),
    ("sqlite:///relative/dir/runs.sqlite", "runs.sqlite"),
    ("sqlite:///file:/srv/alice/runs.sqlite?mode=ro&uri=true", "runs.sqlite"),  # how read-only stores are opened
    ("sqlite+pysqlite:////tmp/x/y.db", "y.db"),
    ("sqlite://", "sqlite://"),  # in memory
    ("duckdb:////home/alice/x.db", f"duckdb:///{ELLIPSIS}/x.db"),
    ("postgresql://u:p@ss/w@rd@db.example.org:5432/runs", f"postgresql://u:{MASK}@db.example.org:5432/runs"),
    ("postgresql://u:secret pw@h:x/db", f"postgresql://u:{MASK}@h:x/db"),  # not even parseable: still masked
    ("postgresql://u@h/db?sslrootcert=/home/alice/ca.pem", "postgresql://u@h/db?sslrootcert=ca.pem"),
    ("postgresql://db.example.org/runs", "postgresql://db.example.org/runs"),
])
def test_redact_url_examples(url, expected):
    assert redact_url(url) == expected


# -------------------------------------------------------------------------------------------- paths, weights

@given(dirs=st.lists(segments, min_size=1, max_size=4), name=segments,
       windows=st.booleans(), prefix=st.sampled_from(["", "file:"]))
def test_redact_path_keeps_only_the_file_name(dirs, name, windows, prefix):
    sep = "\\" if windows else "/"
    path = prefix + ("C:" if windows else "") + sep + sep.join(dirs) + sep + name
    assert redact_path(path) == name


@given(dirs=st.lists(segments, min_size=1, max_size=4), stem=segments,
       sha=st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64)))
def test_public_weights_shows_the_file_name_and_sha_prefix(dirs, stem, sha):
    name = stem + ".weights.h5"
    weights = "file:/" + "/".join(dirs) + "/" + name
    out = public_weights(weights, sha)
    assert out == f"file:{name}" + (f" (sha256 {sha[:8]})" if sha else "")
    assert public_weights(out, sha) == out  # applying it again changes nothing


@pytest.mark.parametrize("weights", ["none", "imagenet", "imagenet-torchvision", "run:0123456789abcdef", None])
def test_public_weights_leaves_names_alone(weights):
    assert public_weights(weights, "ab" * 32) == weights


# -------------------------------------------------------------------------------------------- redact_text

@given(before=st.text(max_size=30), after=st.text(max_size=30), user=names, password=passwords, host=names)
def test_redact_text_never_shows_a_url_password(before, after, user, password, host):
    def text(secret: str) -> str:
        return f"{before}postgresql://{user}:{secret}@{host}:5432/runs{after}"

    context = text("")
    assume(password not in context)
    out = redact_text(text(password))
    assert not _leaks(password, out, context), out
    assert not _leaks(password, redact_text(text(password), paths=False), context)


@given(before=st.text(string.ascii_letters + " :='(", max_size=20), after=st.text(string.ascii_letters + " .,')",
                                                                                 max_size=20),
       dirs=st.lists(segments, min_size=1, max_size=4), name=segments)
def test_redact_text_cuts_absolute_paths_to_their_file_name(before, after, dirs, name):
    path = "/" + "/".join(dirs) + "/" + name
    text = f"{before} {path} {after}"
    assume(all(d not in f"{before} {after} {name}" for d in dirs))
    out = redact_text(text)
    assert not any(d in out for d in dirs), out
    assert f"{ELLIPSIS}/{name}" in out
    assert redact_text(text, paths=False) == text  # the local user's own screen keeps them


@given(key=st.sampled_from(["password", "PASSWORD", "pwd", "secret", "token", "api_key"]),
       sep=st.sampled_from(["=", ": ", " = "]), value=st.text(string.ascii_letters + string.digits + "!$%^*-_.+/",
                                                            min_size=6, max_size=20))
def test_redact_text_masks_password_pairs(key, sep, value):
    text = f"connect failed (host=db {key}{sep}{value} port=5432)"
    assume(value not in text.replace(value, ""))
    out = redact_text(text, paths=False)
    assert value not in out and f"{key}{sep}{MASK}" in out, out


def test_redact_text_takes_out_the_home_folders_even_with_spaces(tmp_path, monkeypatch):
    home = tmp_path / "my tl home"
    monkeypatch.setenv("TRANSFERLAB_HOME", str(home))
    text = f"cannot read {home}/cache/features/x.npz: ({Path.home()}/notes.txt, {home})"
    out = redact_text(text)
    assert "my tl home" not in out and "tl home" not in out and str(Path.home()) not in out, out
    assert f"{ELLIPSIS}/x.npz" in out and f"{ELLIPSIS}/notes.txt" in out


def test_redact_text_masks_the_stores_own_secret_in_any_form(monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_STORE", "postgresql://tl:s3cr%40t-pw@db.internal/runs")
    # A driver may quote the password decoded and outside any URL; only knowing it finds it there.
    out = redact_text("authentication failed for user 'tl' (password 's3cr@t-pw' rejected)", paths=False)
    assert "s3cr@t-pw" not in out and "s3cr%40t-pw" not in out and "user 'tl'" in out


def test_redact_text_keeps_public_urls_and_plain_words():
    text = ("Downloading https://example.org/data/gtsrb.zip failed; see https://sqlalche.me/e/20/e3q8. "
            "Use 32 px and/or 2024/01/02 tokens for text.")
    assert redact_text(text) == text


# -------------------------------------------------------------------------------------------- public_runs

def _spec(weights: str, sha: str | None, seed: int = 0) -> str:
    return json.dumps(dict(task="digits", backbone="small_cnn", strategy="frozen_features", weights=weights,
                           weights_sha256=sha, seed=seed, examples_per_class=5), sort_keys=True)


def test_public_runs_takes_paths_out_of_every_column_and_leaves_the_input_alone():
    import pandas as pd

    from transferlab.analysis import config_keys

    a, b = "a" * 64, "b" * 64
    runs = pd.DataFrame(dict(
        run_id=["r1", "r2", "r3"],
        weights=["file:/srv/alice/one/x.weights.h5", "file:/srv/alice/two/x.weights.h5", "imagenet"],
        spec_json=[_spec("file:/srv/alice/one/x.weights.h5", a), _spec("file:/srv/alice/two/x.weights.h5", b),
                   _spec("imagenet", None)],
        manifest_json=[json.dumps(dict(weights="file:/srv/alice/one/x.weights.h5", weights_sha256=a,
                                       provenance={"source": "/srv/alice/data/folder"})), None, "not json"],
        error=["Weights file /srv/alice/one/x.weights.h5 changed", None, "postgresql://u:hunter22@h/db down"],
        score=[0.5, 0.6, 0.7],
    ))
    before = runs.copy()
    public = public_runs(runs)
    assert runs.equals(before)
    assert list(public["weights"]) == ["file:x.weights.h5 (sha256 aaaaaaaa)", "file:x.weights.h5 (sha256 bbbbbbbb)",
                                       "imagenet"]
    text = public.to_json()
    assert "alice" not in text and "hunter22" not in text, text
    assert json.loads(public.at[0, "spec_json"])["weights"] == "file:x.weights.h5 (sha256 aaaaaaaa)"
    assert public.at[2, "manifest_json"] == "not json" and public.at[2, "spec_json"] == runs.at[2, "spec_json"]
    # Two files of one name in two folders stay two configurations (their sha256 differ).
    assert config_keys(public).nunique() == config_keys(runs).nunique() == 3


# -------------------------------------------------------------------------------------------- the CLI

# The password holds an unescaped @: the driver splits it there and names the tail as part of the host.
POSTGRES_SECRETS = ("s3cr3t@pw-x9", "s3cr3t", "pw-x9", "qs3cr3t", "ssl-pw-9")
POSTGRES_URL = ("postgresql://tl:s3cr3t@pw-x9@127.0.0.1:1/runs"  # nothing listens on port 1: refused at once
                "?password=qs3cr3t&sslpassword=ssl-pw-9&connect_timeout=2")
CLI_COMMANDS = [
    ["runs"],
    ["runs", "--csv"],
    ["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--examples-per-class",
     "5", "--dry-run"],
    ["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--examples-per-class",
     "5"],
    ["demo", "--sizes", "5", "--seeds", "0"],
]


@pytest.mark.parametrize("argv", CLI_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_cli_never_prints_a_store_password(argv, monkeypatch, capsys):
    from transferlab.cli import main

    monkeypatch.setenv("TRANSFERLAB_STORE", POSTGRES_URL)
    code = main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert not [secret for secret in POSTGRES_SECRETS if secret in text], text
    if "--dry-run" in argv:
        assert code == 0 and "1 jobs" in out.out  # the dry run does not open the store
    else:
        assert code == 2 and "cannot be opened" in out.err and "127.0.0.1:1/runs" in out.err, out.err
        assert f"tl:{MASK}@127.0.0.1" in out.err and f"password={MASK}" in out.err


def test_cli_names_a_sqlite_store_that_cannot_open_by_its_file_name_only(tmp_path, monkeypatch, capsys):
    from transferlab.cli import main

    private = tmp_path / "alice-private-folder"
    private.mkdir()
    (private / "not-a-folder").write_text("a file where the store's folder should be")
    monkeypatch.setenv("TRANSFERLAB_STORE", f"sqlite:///{private}/not-a-folder/runs.sqlite")
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert "alice-private-folder" not in err and str(tmp_path) not in err, err
    assert "The store at runs.sqlite cannot be opened" in err and "TRANSFERLAB_STORE" in err


# -------------------------------------------------------------------------------------------- read-only dashboard

WEIGHTS_DIR = "/srv/alice-private/models-of-2026"
WEIGHTS_SHA = "1a2b3c4d" + "e" * 56
PUBLIC_WEIGHTS = "file:x.weights.h5 (sha256 1a2b3c4d)"
LEAKS = ("alice-private", "models-of-2026", WEIGHTS_DIR)


@pytest.fixture(scope="module")
def file_weights_home(seeded_home, tmp_path_factory):
    """A copy of the seeded store plus four frozen_features runs that started from a local weights file (their
    results copied from the seeded random-init runs, inserted through the store API)."""
    import os

    from transferlab.jobs import JobSpec
    from transferlab.store import Store

    home = tmp_path_factory.mktemp("file-weights-home")
    with sqlite3.connect(seeded_home / "runs.sqlite") as src, sqlite3.connect(home / "runs.sqlite") as dst:
        src.backup(dst)  # a consistent copy, WAL included
    store = Store(f"sqlite:///{home / 'runs.sqlite'}")
    runs = store.runs_frame()
    models = runs[(runs["strategy"] == "frozen_features") & runs["source"].isna() & (runs["kind"] == "train")]
    assert len(models) == 4
    results = ["score", "metric", "metric_label", "test_loss", "balanced_accuracy", "trainable_params",
               "total_params", "wall_seconds", "images_per_second", "transferability", "phases_json",
               "confusion_json", "metrics_json"]
    epochs = store.epochs_frame(list(models["run_id"]))
    for _, model in models.iterrows():
        spec = json.loads(model["spec_json"])
        spec.update(weights=f"file:{WEIGHTS_DIR}/x.weights.h5", weights_sha256=WEIGHTS_SHA)
        job = JobSpec.from_json(json.dumps(spec))
        store.submit([job])
        assert store.claim("test", among=[job.job_id]).job_id == job.job_id
        for _, epoch in epochs[epochs["run_id"] == model["run_id"]].iterrows():
            store.log_epoch(job.job_id, int(epoch["epoch"]), epoch["phase"],
                            dict(loss=epoch["train_loss"], score=epoch["train_score"], val_loss=epoch["val_loss"],
                                 val_score=epoch["val_score"]), float(epoch["seconds"]))
        manifest = dict(json.loads(model["manifest_json"]), weights=job.weights, weights_sha256=WEIGHTS_SHA)
        store.finish(job.job_id, "succeeded", manifest_json=manifest, **{k: _plain(model[k]) for k in results})
    store.engine.dispose()  # last connection closed: SQLite folds the WAL back in, the folder is at rest
    assert os.listdir(home) == ["runs.sqlite"]
    return home


def _plain(value):
    """A frame cell as the database driver takes it: None for missing, Python numbers for numpy ones."""
    import pandas as pd

    if not isinstance(value, str) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder``: size, mtime and sha256 of each file."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_dir():
            found[rel] = ("dir", path.stat().st_mtime_ns)
        else:
            data = path.read_bytes()
            found[rel] = (len(data), path.stat().st_mtime_ns, hashlib.sha256(data).hexdigest())
    return found


def _download_text(data) -> str:
    """A download's content as text: Parquet (compressed) read back into a table, the rest decoded."""
    import io

    import pandas as pd

    data = data if isinstance(data, bytes) else str(data).encode()
    if data[:4] == b"PAR1":
        table = pd.read_parquet(io.BytesIO(data))
        return table.to_csv(index=False) + " ".join(table.columns)
    return data.decode("utf-8", errors="replace")


def _walk(node):
    yield node
    children = getattr(node, "children", None) or {}
    for child in children.values():
        yield from _walk(child)


def _page_text(at) -> str:
    """Everything a visitor can see on a page: texts, dataframes (values, columns, index), widget options,
    metric labels and values, plotly figure specs, and the raw element messages as a catch-all."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "success", "warning",
                 "error", "exception", "code", "latex", "json"):
        parts += [str(getattr(e, "value", "")) for e in getattr(at, kind, [])]
    for frame in list(at.dataframe) + list(at.table):
        value = frame.value
        parts += [value.to_csv(), " ".join(map(str, value.columns)), " ".join(map(str, value.index))]
    for widget in list(at.selectbox) + list(at.multiselect) + list(at.radio):
        parts += [str(widget.label)] + [str(o) for o in widget.options]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [e.label for e in at.expander]
    # plotly's JSON escapes / and non-ASCII (\u002f): decoded, a path in a legend or hover reads as written
    parts += [json.dumps(json.loads(chart.proto.spec), ensure_ascii=False) for chart in at.get("plotly_chart")]
    parts += [str(node.proto) for node in _walk(at._tree) if getattr(node, "proto", None) is not None]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def read_only_visit(file_weights_home):
    """Every page offered in read-only mode, visited once over the file-weights store (the Share page's report
    built too): what each showed, what the downloads held, and the home before and after."""
    from streamlit.runtime.media_file_storage import MediaFileKind
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import AppTest

    from transferlab.dashboard.common import page_list

    downloads: list[tuple[str, str]] = []
    keep = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        if kind == MediaFileKind.DOWNLOADABLE:  # not the images a page shows (the Inspect page's thumbnails)
            downloads.append((mimetype, _download_text(path_or_data)))
        return keep(self, path_or_data, mimetype, kind, filename)

    shown = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERLAB_HOME", str(file_weights_home))
        patch.setenv("TRANSFERLAB_READ_ONLY", "1")
        patch.delenv("TRANSFERLAB_STORE", raising=False)
        patch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
        before = _snapshot(file_weights_home)
        for name, _, _ in page_list(True):
            at = AppTest.from_file(str(PAGES / name), default_timeout=120)
            at.run()
            if name == "share.py":
                next(b for b in at.button if b.label == "Build HTML report").click().run()
            assert not at.exception, (name, at.exception)
            shown[name] = _page_text(at)
        after = _snapshot(file_weights_home)
    return dict(shown=shown, downloads=downloads, before=before, after=after)


def test_read_only_visit_covers_every_offered_page_and_not_the_run_page(read_only_visit):
    assert set(read_only_visit["shown"]) == {p.name for p in PAGES.glob("*.py")} - {"__init__.py", "run.py"}


@pytest.mark.parametrize("page", ["home.py", "backbones.py", "compare.py", "data_efficiency.py",
                                  "negative_transfer.py", "plugins.py", "share.py", "verdict.py", "rank.py"])
def test_no_read_only_page_shows_the_weights_folder(read_only_visit, page):
    text = read_only_visit["shown"][page]
    assert not [leak for leak in LEAKS if leak in text], (page, [line for line in text.splitlines()
                                                                 if "alice" in line][:5])


def test_read_only_pages_show_the_weights_file_by_name_and_sha256(read_only_visit):
    shown = read_only_visit["shown"]
    # legends and hover (plotly specs), filters (multiselect options), tables
    for page in ("compare.py", "data_efficiency.py", "backbones.py"):
        assert PUBLIC_WEIGHTS in shown[page], page
    assert f"small_cnn · {PUBLIC_WEIGHTS} · frozen_features" in shown["data_efficiency.py"]


def test_read_only_downloads_hold_no_weights_folder(read_only_visit):
    downloads = read_only_visit["downloads"]  # each rerun of the page offers them again
    assert {kind for kind, _ in downloads} == {"text/csv", "application/octet-stream", "text/html"}  # + report
    for kind, text in downloads:
        assert not [leak for leak in LEAKS if leak in text], kind
        assert PUBLIC_WEIGHTS in text, kind


def test_read_only_visit_changes_no_file_in_the_home(read_only_visit):
    before, after = read_only_visit["before"], read_only_visit["after"]
    assert list(before) == ["runs.sqlite"], "the home holds the store, at rest"
    # byte for byte, size and mtime, and nothing new beside it: not even SQLite's -wal and -shm files,
    # which a plain read-only open of a WAL-mode store at rest would create
    assert after == before


def test_html_report_never_holds_a_local_path(file_weights_home, monkeypatch):
    """Built from the stored runs as they are (not read-only): the report is made to be passed on."""
    from transferlab.dashboard.report import html_report
    from transferlab.store import Store

    store = Store(f"sqlite:///{file_weights_home / 'runs.sqlite'}", read_only=True)
    runs = store.runs_frame()
    runs = runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]
    assert runs["weights"].str.contains("alice-private").any()  # the store holds the path
    report = html_report(runs, store.epochs_frame())
    store.engine.dispose()
    assert not [leak for leak in LEAKS if leak in report]
    assert PUBLIC_WEIGHTS in report or json.dumps(PUBLIC_WEIGHTS)[1:-1] in report


def test_file_weights_home_is_a_copy(file_weights_home, seeded_home):
    """The fixture never wrote into the shared seeded home's store."""
    with sqlite3.connect(f"file:{seeded_home / 'runs.sqlite'}?mode=ro", uri=True) as conn:
        weights = {row[0] for row in conn.execute("SELECT weights FROM runs")}
    assert not any(w.startswith("file:") for w in weights)


@pytest.mark.parametrize("page", ["home.py", "backbones.py"])
def test_a_failed_availability_check_shows_without_its_path_in_read_only_mode(page, file_weights_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import transferlab.registry

    def failing(spec, yes, no):  # a plugin's check raised with a path in its message
        return f"unknown (available() raised FileNotFoundError: {WEIGHTS_DIR}/data/labels.csv)"

    monkeypatch.setattr(transferlab.registry, "availability_label", failing)
    monkeypatch.setenv("TRANSFERLAB_HOME", str(file_weights_home))
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    at = AppTest.from_file(str(PAGES / page), default_timeout=120)
    at.run()
    text = _page_text(at)
    assert not at.exception and not [leak for leak in LEAKS if leak in text]
    assert f"unknown (available() raised FileNotFoundError: {ELLIPSIS}/labels.csv)" in text


def test_plugins_page_shows_plugin_errors_and_output_without_paths_in_read_only_mode(file_weights_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from transferlab.registry import Registry

    real = Registry.health

    def with_a_broken_plugin(self):
        return [*real(self), dict(name="leaky", version="1.0", builtin=False, hooks=["transferlab_tasks"],
                                  registered={}, status="error",
                                  error=f"failed to import: FileNotFoundError: {WEIGHTS_DIR}/plugin.cfg",
                                  output=f"reading {WEIGHTS_DIR}/plugin.cfg\n")]

    monkeypatch.setattr(Registry, "health", with_a_broken_plugin)
    monkeypatch.setenv("TRANSFERLAB_HOME", str(file_weights_home))
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    at = AppTest.from_file(str(PAGES / "plugins.py"), default_timeout=120)
    at.run()
    text = _page_text(at)
    assert not at.exception and not [leak for leak in LEAKS if leak in text]
    assert f"failed to import: FileNotFoundError: {ELLIPSIS}/plugin.cfg" in text
    assert f"reading {ELLIPSIS}/plugin.cfg" in text


@pytest.mark.parametrize("text, secret", [("password=0;0000 rest", ";0000"), ("token: abc,def rest", ",def"),
                                          ("secret=a&b=c rest", "&b=c")])
def test_a_keyword_secret_is_masked_to_the_next_space(text, secret):
    from transferlab.redact import redact_text

    masked = redact_text(text)
    assert masked.endswith(" rest") and secret not in masked and "***" in masked


def test_a_url_whose_user_is_named_like_the_home_folder_keeps_its_password_masked(monkeypatch):
    # run as root, the home folder is /root: `postgresql://root:pw@db` held "/root", which was cut out first
    # and left `postgresql:/…:pw@db`, a URL no longer recognised, with its password in it
    monkeypatch.setenv("HOME", "/root")
    out = redact_text("could not connect to postgresql://root:s3cret-pw@db.example.org:5432/runs")
    assert "s3cret-pw" not in out and "db.example.org" in out
