"""Faults around a run (issue 23): input paths that cannot be read, links, a file that changes while it is landed,
encodings that cannot be read, a home or serving folder that cannot be written, a full disk. Each ends with the
run landed in full or one `error:` line naming the path and what to do: never a traceback, never a silent skip.

Permission cases need a user the file modes apply to. Tests run as root in CI, and root passes every mode check,
so those commands run under ``setpriv`` with the two capabilities that let root ignore file modes
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) removed from its bounding set: a root process that mode 000 stops, as it
stops any other user. (Run as another user, the commands run as they are.)
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port

from brecha.core.errors import InputFileError
from brecha.landing.ingest import ingest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DISTRICTS = "ubigeo-aumentado/ubigeo_distrito.csv"
C23 = "hubergilt-osiptel/IndMovil-C23.csv"
C22 = "hubergilt-osiptel/moviles-lineas_C2.2_junio2014.csv"


@pytest.fixture
def src(synthetic_dir: Path) -> Path:
    """The real extracts when ../shared is present, else the session's synthetic ones (same layouts and names)."""
    from conftest import REAL_DIR

    return REAL_DIR if REAL_DIR.is_dir() and not os.environ.get("BRECHA_TEST_SYNTHETIC_EXTRACTS") else synthetic_dir


def copy_in(src: Path, dest: Path, *rels: str) -> Path:
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest / rel)
    return dest


def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` as a process that file modes apply to (see the module docstring)."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): file modes cannot be made to apply")
    return [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
        *cmd,
    ]


def brecha(*args: str, home: Path, as_user: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "brecha"), *args]
    env = {**os.environ, "BRECHA_HOME": str(home)}
    return subprocess.run(
        unprivileged(cmd) if as_user else cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error:` line a failed command printed (and no traceback)."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def batches(home: Path) -> list[tuple]:
    import duckdb

    db = home / "brecha.duckdb"
    if not db.exists():
        return []
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT batch_id, status FROM raw._batches ORDER BY 1").fetchall()


# --- input paths ----------------------------------------------------------------------------------------------
def test_an_unlistable_subfolder_or_unreadable_file_stops_the_batch_naming_it(
    src: Path, brecha_home: Path, tmp_path: Path
) -> None:
    folder = copy_in(src, tmp_path / "in", DISTRICTS, C23, C22)
    locked = folder / "hubergilt-osiptel"
    locked.chmod(0)
    try:
        line = one_error_line(brecha("ingest", str(folder), home=brecha_home))
    finally:
        locked.chmod(0o755)
    assert "hubergilt-osiptel/: the folder cannot be listed (permission denied)" in line
    assert "chmod" in line  # what to do
    (folder / C23).chmod(0)
    try:
        line = one_error_line(brecha("ingest", str(folder), home=brecha_home))
    finally:
        (folder / C23).chmod(0o644)
    assert f"error: {C23}: the file cannot be read (permission denied)" in line
    assert all(status != "ok" for _, status in batches(brecha_home))  # nothing landed as a green batch
    # readable again, the same folder lands in full
    ok = brecha("ingest", str(folder), home=brecha_home)
    assert ok.returncode == 0, ok.stderr
    assert "IndMovil-C23.csv" in ok.stdout and "moviles-lineas_C2.2" in ok.stdout


def test_a_linked_subfolder_is_followed_and_a_loop_or_broken_link_stops_the_batch(
    src: Path, brecha_home: Path, tmp_path: Path
) -> None:
    elsewhere = copy_in(src, tmp_path / "elsewhere", C23, C22)
    folder = copy_in(src, tmp_path / "in", DISTRICTS)
    (folder / "osiptel").symlink_to(elsewhere / "hubergilt-osiptel", target_is_directory=True)
    (folder / "c23-link.csv").symlink_to(elsewhere / C23)  # a linked file: the same bytes, landed once
    result = ingest(folder)
    assert {f.source_file for f in result.files} == {
        DISTRICTS,
        "c23-link.csv",
        "osiptel/moviles-lineas_C2.2_junio2014.csv",
    }  # the linked folder's files landed
    assert dict(result.skipped) == {"osiptel/IndMovil-C23.csv": "same bytes as c23-link.csv"}
    (elsewhere / "hubergilt-osiptel" / "up").symlink_to(elsewhere, target_is_directory=True)  # a loop
    with pytest.raises(InputFileError, match="a folder that contains it: following it would loop") as err:
        ingest(folder)
    assert err.value.file == "osiptel/up"
    (elsewhere / "hubergilt-osiptel" / "up").unlink()
    (folder / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(InputFileError, match="is a symbolic link to .*nowhere.csv, which cannot be followed") as err:
        ingest(folder)
    assert err.value.file == "gone.csv"


def test_a_file_growing_while_it_is_landed_lands_exactly_as_archived(
    src: Path, brecha_home: Path, tmp_path: Path
) -> None:
    """Rows appended every 10 ms during the whole batch: what is recorded, landed and archived is one version."""
    import duckdb

    folder = copy_in(src, tmp_path / "in", DISTRICTS)
    growing = folder / DISTRICTS
    raw = growing.read_bytes()
    body = raw.decode("utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "latin-1").splitlines()[1:]
    stop = threading.Event()

    def append() -> None:
        n = 0
        while not stop.is_set():
            with growing.open("ab") as fh:
                fh.write((body[n % len(body)] + "\n").encode("utf-8"))
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        time.sleep(0.2)
        result = ingest(folder)
    finally:
        stop.set()
        writer.join()
    (landed,) = result.files
    with duckdb.connect(str(brecha_home / "brecha.duckdb"), read_only=True) as con:
        sha, archived_as = con.execute("SELECT sha256, archived_as FROM raw._batch_files").fetchone()
    archived = brecha_home / "archive" / archived_as
    assert pub_sha(archived) == sha == landed.sha256
    text = archived.read_bytes().decode("utf-8-sig")
    records = [r for r in csv.reader(io.StringIO(text, newline="")) if r][1:]
    assert landed.rows_landed + landed.rows_rejected == len(records)
    assert len(records) > len(body)  # rows appended before the batch read the file are in it
    assert growing.stat().st_size > archived.stat().st_size  # and the file kept growing after its one read
    assert not (brecha_home / "archive" / ".staging").exists()  # the batch's copies are gone


def pub_sha(path: Path) -> str:
    from brecha.core.files import sha256_of

    return sha256_of(path)


# --- encodings ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "codec, bom, name",
    [
        ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16 big-endian"),
        ("utf-16-be", b"", "UTF-16 big-endian"),
        ("utf-32-le", codecs.BOM_UTF32_LE, "UTF-32 little-endian"),
        ("utf-32-le", b"", "UTF-32 little-endian"),
        ("utf-32-be", codecs.BOM_UTF32_BE, "UTF-32 big-endian"),
        ("utf-32-be", b"", "UTF-32 big-endian"),
    ],
)
def test_an_encoding_that_cannot_be_read_is_named(
    src: Path, brecha_home: Path, tmp_path: Path, codec: str, bom: bytes, name: str
) -> None:
    text = (src / DISTRICTS).read_bytes().decode("utf-8-sig")
    (tmp_path / "d.csv").write_bytes(bom + text.encode(codec))
    with pytest.raises(InputFileError) as err:
        ingest(tmp_path)
    assert err.value.file == "d.csv"
    assert f"the text is {name}" in err.value.problem
    assert "truncated" not in str(err.value) and "ubigeo" not in str(err.value)  # no garbled header
    assert "UTF-8" in err.value.fix


def test_utf16_little_endian_lands_with_or_without_its_byte_order_mark(
    src: Path, brecha_home: Path, tmp_path: Path
) -> None:
    text = (src / DISTRICTS).read_bytes().decode("utf-8-sig")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "d.csv").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    (tmp_path / "b" / "d.csv").write_bytes(text.encode("utf-16-le"))
    with_bom, without = ingest(tmp_path / "a").files, ingest(tmp_path / "b").files
    assert [(f.entity, f.rows_landed, f.rows_rejected) for f in with_bom] == [
        (f.entity, f.rows_landed, f.rows_rejected) for f in without
    ]
    assert with_bom[0].rows_landed > 1000


# --- a home, a serving folder or a disk that cannot be written --------------------------------------------------
def read_only_copy(home: Path, dest: Path) -> Path:
    """The warehouse and serving folder of ``home`` (artifacts linked), every file and folder without write bits."""
    dest.mkdir()
    shutil.copyfile(home / "brecha.duckdb", dest / "brecha.duckdb")
    shutil.copytree(home / "serving", dest / "serving", symlinks=True)
    (dest / "artifacts").symlink_to(home / "artifacts", target_is_directory=True)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222)
    return dest


def test_a_read_only_home_serves_readers_and_stops_writers_with_one_line(session_home: Path, tmp_path: Path) -> None:
    home = read_only_copy(session_home, tmp_path / "ro")
    try:
        for args in (
            ["runs"],
            ["publish", "--list"],
            ["sql", "-csv", "-c", "SELECT count(*) FROM marts.dim_districts"],
        ):
            proc = brecha(*args, home=home)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.stdout.split()[-1].isdigit() and int(proc.stdout.split()[-1]) > 1000
        port = free_port()
        server = subprocess.Popen(
            unprivileged([str(BIN / "brecha"), "serve", "--port", str(port)]),
            cwd=REPO,
            env={**os.environ, "BRECHA_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/health", server)
        finally:
            server.terminate()
            server.wait(timeout=30)
        for args in (["run"], ["ingest", str(REPO / "tests")], ["publish"], ["publish", "--rollback"], ["atlas"]):
            line = one_error_line(brecha(*args, home=home))
            assert f"{home}/.run.lock: cannot open the run lock (permission denied)" in line, (args, line)
            assert "Readers (`brecha sql`, `runs`, `publish --list`, `serve`) still work" in line
    finally:
        for path in [home, *home.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)


def ledger_rows(home: Path) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        return con.execute("SELECT snapshot_id, action, sha256 FROM ops.snapshots ORDER BY published_at").fetchall()


def test_a_serving_folder_or_snapshots_folder_that_cannot_be_written_stops_publish_with_one_line(
    brecha_home: Path,
) -> None:
    from test_publish import make_warehouse

    from brecha.core.settings import paths
    from brecha.warehouse import publish as pub

    p = paths()
    make_warehouse(p.db)
    pub.publish()
    make_warehouse(p.db, districts=40)
    pub.publish()
    served, ledger, listing = pub.sha256_of(p.serving_db), ledger_rows(brecha_home), pub.list_snapshots()
    make_warehouse(p.db, districts=50)
    for folder, commands in ((p.serving, (["publish"], ["publish", "--rollback"])), (p.snapshots, (["publish"],))):
        folder.chmod(0o555)
        try:
            for args in commands:
                line = one_error_line(brecha(*args, home=brecha_home))
                assert f"{folder}: cannot write there (permission denied)" in line, line
                assert "make both writable" in line and "The served copy is unchanged" in line
        finally:
            folder.chmod(0o755)
        assert pub.sha256_of(p.serving_db) == served and ledger_rows(brecha_home) == ledger
        assert pub.list_snapshots() == listing
        assert not [f for f in p.serving.rglob("*") if pub.TMP_SUFFIX in f.name or "pending" in f.name]


def _mount_namespace() -> list[str]:
    """A command prefix giving a process a mount namespace of its own (to mount a small tmpfs: a disk that fills)."""
    for prefix in (["unshare", "-m"], ["unshare", "-Urm"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    pytest.skip(
        "no mount namespace available here (unshare -m and unshare -Urm both refused): a full disk "
        "cannot be made without changing the machine's own mounts"
    )


FULL_DISK = """
set -e
mount -t tmpfs -o size=$SIZE tmpfs "$SERVING"
cp -a "$BACKUP/." "$SERVING/"
set +e
"$BRECHA" publish 2> "$ERR"
echo "rc=$?"
sha256sum "$SERVING/brecha.duckdb"
find "$SERVING" -name '.*' ! -name .publish.lock
"""


def test_a_full_disk_stops_publish_with_one_line_and_leaves_nothing_behind(brecha_home: Path, tmp_path: Path) -> None:
    """The serving folder on a tmpfs too small for one more copy (a mount namespace of the test's own)."""
    from test_publish import make_warehouse

    from brecha.core.settings import paths
    from brecha.warehouse import publish as pub

    prefix = _mount_namespace()
    p = paths()
    make_warehouse(p.db)
    pub.publish()
    served, ledger = pub.sha256_of(p.serving_db), ledger_rows(brecha_home)
    backup = tmp_path / "backup"
    shutil.copytree(p.serving, backup, symlinks=True)
    used = sum(f.stat().st_size for f in backup.rglob("*") if f.is_file() and not f.is_symlink())
    make_warehouse(p.db, districts=3000)  # a bigger copy to write
    err = tmp_path / "stderr"
    env = {
        **os.environ,
        "SIZE": str(used + p.serving_db.stat().st_size // 2),
        "SERVING": str(p.serving),
        "BACKUP": str(backup),
        "BRECHA": str(BIN / "brecha"),
        "ERR": str(err),
    }
    proc = subprocess.run([*prefix, "bash", "-c", FULL_DISK], capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout.splitlines()
    assert "rc=1" in out, proc.stdout + proc.stderr + err.read_text()
    line = one_error_line(subprocess.CompletedProcess([], 1, "", err.read_text()))
    assert "no space left on device" in line.lower() and "the disk is full: free space" in line, line
    assert out[out.index("rc=1") + 1].split()[0] == served  # the served copy as it was
    assert [ln for ln in out[out.index("rc=1") + 2 :] if ln.strip()] == []  # no temporary file, no pending record
    assert ledger_rows(brecha_home) == ledger  # the ledger as it was (the unfinished row removed)


# --- processes that outlive the command that started them ---------------------------------------------------------
def wait_for(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert proc.poll() is None, f"exited with {proc.returncode}"
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds} s")


def test_serve_workers_end_with_the_server_killed_9_and_free_the_port(session_home: Path) -> None:
    import signal
    import socket

    from brecha.core.lifetime import descendants

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "brecha"), "serve", "--workers", "2", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "BRECHA_HOME": str(session_home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        workers = descendants(server.pid)
        assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and [p for p in workers if Path(f"/proc/{p}").exists()]:
            time.sleep(0.2)
        assert [p for p in workers if Path(f"/proc/{p}").exists()] == []
        with socket.socket() as s:  # what a restart does first: bind the port (as uvicorn does, SO_REUSEADDR)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # the test's own session, should anything be left
