"""The lake: a DuckLake catalog in PostgreSQL with Parquet data under a path, beside the embedded DuckDB file.

Two jobs, both small:

* ``up`` / ``down`` (``make lake-up`` / ``make lake-down``, ``python -m brecha.core.lake up|down|status --home H``):
  a PostgreSQL cluster the project starts itself for one home, with Debian's packaged server (installed with apt-get
  when absent, as root): data folder ``<home>/lake/pg``, a generated password (scram-sha-256), listening on
  127.0.0.1 only on a free port, the catalog database ``brecha_lake``, and ``<home>/lake.env`` (mode 0600) that a
  shell sources to use the lake (``BRECHA_LAKE``: the catalog's postgresql:// address, ``BRECHA_LAKE_DATA``: where
  the Parquet files go). PostgreSQL refuses to run as root: run as root, every server command runs as the package's
  ``postgres`` system user, the owner of the data folder, as Debian's own ``pg_ctlcluster`` does (it changes uid and
  gid to the cluster owner's before it calls ``pg_ctl``); run as anyone else, as that user.
* ``ducklake_path`` / ``attach_sql``: how a DuckDB process (landing, dbt, a reader) attaches that catalog.

Only the standard library here: ``make lake-up`` needs no DuckDB.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from brecha.core.errors import BrechaError
from brecha.core.settings import LAKE_DATA_ENV, LAKE_ENV, LAKE_READER_ENV, Paths

CATALOG_DB = "brecha_lake"
SUPERUSER = "brecha"
ALIAS = "lake"  # the name the lake is attached under in every DuckDB process
READER = "brecha_reader"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian's versioned server binaries (postgresql-NN)
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


# --- the catalog's address ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Catalog:
    """A PostgreSQL address, parsed from ``postgresql://user:password@host:port/database``."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, dsn: str) -> Catalog:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
            raise BrechaError(f"{LAKE_ENV}={redact(dsn)!r} is no PostgreSQL address: expected "
                              "postgresql://user:password@host:port/database (`make lake-up` writes one to "
                              "$BRECHA_HOME/lake.env)")
        return cls(host=parts.hostname, port=parts.port or 5432, user=unquote(parts.username or ""),
                   password=unquote(parts.password or ""), database=unquote(parts.path.strip("/")))

    def dsn(self) -> str:
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/"
                f"{quote(self.database, safe='')}")

    def libpq(self) -> str:
        """libpq's ``key=value`` form, which DuckDB's postgres extension takes."""
        def value(v: str) -> str:
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" if re.search(r"[\s'\\]", v) or not v else v
        return " ".join(f"{k}={value(str(v))}" for k, v in (("dbname", self.database), ("host", self.host),
                                                           ("port", self.port), ("user", self.user),
                                                           ("password", self.password)))


def redact(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)


def ducklake_path(dsn: str) -> str:
    """The ``ATTACH`` path of the DuckLake catalog at ``dsn``: ``ducklake:postgres:<libpq string>``."""
    return "ducklake:postgres:" + Catalog.parse(dsn).libpq()


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


SECRET = "brecha_lake_catalog"  # the DuckDB secret holding the catalog's address and password (``attach_sql``)


def attach_sql(dsn: str, data_path: str | Path, *, alias: str = ALIAS, read_only: bool = False,
               snapshot: int | None = None) -> str:
    """The statements that attach the lake in a DuckDB process (the ducklake and postgres extensions loaded): a
    temporary DuckDB secret with the catalog's address and password, then ``ATTACH 'ducklake:postgres:'`` naming that
    secret, so the password shows in no ``duckdb_databases()`` path (``duckdb_secrets()`` shows it redacted)."""
    c = Catalog.parse(dsn)
    secret = (f"CREATE OR REPLACE TEMPORARY SECRET {SECRET} (TYPE postgres, HOST {sql_literal(c.host)}, PORT {c.port}, "
              f"DATABASE {sql_literal(c.database)}, USER {sql_literal(c.user)}, PASSWORD {sql_literal(c.password)})")
    options = [f"DATA_PATH {sql_literal(str(data_path))}", f"META_SECRET '{SECRET}'"]
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    if read_only:
        options.append("READ_ONLY")
    return f"{secret}; ATTACH 'ducklake:postgres:' AS {alias} ({', '.join(options)})"


# --- the server -----------------------------------------------------------------------------------------------------

def pg_bindir() -> Path | None:
    """The newest installed Debian PostgreSQL server's binaries, or None."""
    found = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: _version(p.parent.name))
    found = [p for p in found if (p / "initdb").is_file() and (p / "pg_ctl").is_file()]
    return found[-1] if found else None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)


def install_postgresql(say=print) -> Path:
    """Debian's PostgreSQL server, installed with apt-get when absent (root only); its binary folder."""
    if (bindir := pg_bindir()) is not None:
        return bindir
    if shutil.which("apt-get") is None:
        raise BrechaError("PostgreSQL is not installed and this is no Debian/Ubuntu system (no apt-get): install "
                          f"PostgreSQL 15 or newer so that {PG_BIN_GLOB}/initdb exists, or point {LAKE_ENV} at a "
                          "PostgreSQL you run yourself")
    if os.geteuid() != 0:
        raise BrechaError("PostgreSQL is not installed, and installing it needs root: run "
                          "`sudo apt-get install -y postgresql`, then `make lake-up` again")
    say("installing Debian's PostgreSQL (apt-get install -y postgresql) ...")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    if _apt(install).returncode != 0:
        # an image without package lists (or stale ones): update them once, then install
        for cmd in (["apt-get", "update", "-q"], install):
            proc = _apt(cmd)
            if proc.returncode != 0:
                raise BrechaError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
                                  f"{(proc.stdout + proc.stderr).strip()[-1500:]}")
    if (bindir := pg_bindir()) is None:
        raise BrechaError(f"apt-get installed postgresql, but no server binaries are in {PG_BIN_GLOB}")
    return bindir


def _apt(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, text=True)


@dataclass(frozen=True)
class _Owner:
    """The user the server runs as: ``postgres`` (the package's system user) when we are root, else ourselves."""

    uid: int
    gid: int
    name: str

    @classmethod
    def find(cls) -> _Owner:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(me.pw_uid, me.pw_gid, me.pw_name)
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            raise BrechaError("running as root, the server must run as another user, and the system user "
                              "'postgres' that Debian's postgresql package creates is missing: reinstall the package "
                              "(apt-get install --reinstall postgresql-common)") from None
        return cls(pg.pw_uid, pg.pw_gid, pg.pw_name)

    def run(self, cmd: list[str], *, input: str | None = None, env: dict[str, str] | None = None,
            check: str | None = None) -> subprocess.CompletedProcess:
        """Run ``cmd`` as this user (changing uid and gid as root, like pg_ctlcluster's ``change_ugid``)."""
        extra: dict[str, object] = {}
        if os.geteuid() == 0 and self.uid != 0:
            groups = [g.gr_gid for g in grp.getgrall() if self.name in g.gr_mem]
            extra = {"user": self.uid, "group": self.gid, "extra_groups": groups}
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, cwd="/",
                              env={**os.environ, **(env or {})}, **extra)
        if check is not None and proc.returncode != 0:
            raise BrechaError(f"{check}: `{' '.join(cmd)}` failed (exit {proc.returncode}): "
                              f"{(proc.stdout + proc.stderr).strip()[-1500:]}")
        return proc


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_env(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of a lake.env."""
    values = {}
    for line in path.read_text().splitlines():
        if m := re.match(r"\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$", line):
            values[m.group(1)] = m.group(2).strip().strip("'\"")
    return values


def _write_env(files: Paths, catalog: Catalog, reader: Catalog) -> None:
    text = (f"# The lake of {files.home} (written by `make lake-up`, brecha.core.lake). It holds the catalog's\n"
            "# passwords: keep it private (mode 0600). Use the lake from a shell:  . $BRECHA_HOME/lake.env\n"
            f"export {LAKE_ENV}={catalog.dsn()}\n"
            f"export {LAKE_READER_ENV}={reader.dsn()}\n"
            f"export {LAKE_DATA_ENV}={files.lake_data}\n")
    tmp = files.lake_env.with_suffix(".env.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, files.lake_env)


def _running(bindir: Path, owner: _Owner, files: Paths) -> bool:
    return owner.run([str(bindir / "pg_ctl"), "status", "-D", str(files.lake_pgdata)]).returncode == 0


def _psql(bindir: Path, owner: _Owner, catalog: Catalog, sql: str, database: str = "postgres") -> str:
    proc = owner.run([str(bindir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", catalog.host,
                      "-p", str(catalog.port), "-U", catalog.user, "-d", database, "-c", sql],
                     env={"PGPASSWORD": catalog.password, "PGCONNECT_TIMEOUT": "10"},
                     check="the catalog database could not be set up")
    return proc.stdout.strip()


def up(home: Path, say=print) -> Catalog:
    """Start this home's PostgreSQL (initialising it the first time) and write ``<home>/lake.env``; idempotent."""
    files = Paths(Path(home).resolve())
    bindir = install_postgresql(say)
    owner = _Owner.find()
    files.lake.mkdir(parents=True, exist_ok=True)
    files.lake_data.mkdir(parents=True, exist_ok=True)
    initialised = (files.lake_pgdata / "PG_VERSION").is_file()
    if initialised:
        if not files.lake_env.is_file():
            raise BrechaError(f"{files.lake_pgdata} holds a PostgreSQL cluster but {files.lake_env} (its password and port) is "
                              f"gone: restore lake.env, or remove {files.lake_pgdata} (the lake's catalog!) and run "
                              "`make lake-up` again")
        catalog = Catalog.parse(read_env(files.lake_env).get(LAKE_ENV, ""))
    else:
        catalog = Catalog(host="127.0.0.1", port=free_port(), user=SUPERUSER, password=secrets.token_urlsafe(24),
                          database=CATALOG_DB)
        _initdb(bindir, owner, files, catalog, say)
        # the passwords are kept at once: a start that fails now leaves a cluster `make lake-up` can start again
        _write_env(files, catalog, Catalog(catalog.host, catalog.port, READER, secrets.token_urlsafe(24),
                                           catalog.database))
    if _running(bindir, owner, files):
        say(f"PostgreSQL for {files.home} is already running on 127.0.0.1:{catalog.port}")
    else:
        _start(bindir, owner, files, catalog, say)
    if _psql(bindir, owner, catalog, f"SELECT 1 FROM pg_database WHERE datname = {sql_literal(catalog.database)}") \
            != "1":
        _psql(bindir, owner, catalog, f'CREATE DATABASE "{catalog.database}"')
        say(f"created the catalog database {catalog.database}")
    reader = _reader(bindir, owner, files, catalog)
    _write_env(files, catalog, reader)
    say(f"lake up: catalog {redact(catalog.dsn())}, data {files.lake_data}\n"
        f"settings in {files.lake_env} (mode 0600): `. {files.lake_env}` in a shell uses the lake; `make lake-down` stops it")
    return catalog


def _reader(bindir: Path, owner: _Owner, files: Paths, catalog: Catalog) -> Catalog:
    """The role readers attach with: it may log in and read the catalog's tables (those DuckLake creates later too,
    by default privileges), nothing else: no superuser's view of the server (pg_authid), no writes."""
    known = read_env(files.lake_env).get(LAKE_READER_ENV) if files.lake_env.is_file() else None
    reader = Catalog.parse(known) if known else Catalog(catalog.host, catalog.port, READER,
                                                        secrets.token_urlsafe(24), catalog.database)
    exists = _psql(bindir, owner, catalog, f"SELECT 1 FROM pg_roles WHERE rolname = {sql_literal(reader.user)}")
    verb = "ALTER" if exists == "1" else "CREATE"
    _psql(bindir, owner, catalog, f'{verb} ROLE "{reader.user}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                                  f"PASSWORD {sql_literal(reader.password)}")
    _psql(bindir, owner, catalog, f'GRANT CONNECT ON DATABASE "{catalog.database}" TO "{reader.user}"; '
                                  f'GRANT USAGE ON SCHEMA public TO "{reader.user}"; '
                                  f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader.user}"; '
                                  f'ALTER DEFAULT PRIVILEGES FOR ROLE "{catalog.user}" IN SCHEMA public '
                                  f'GRANT SELECT ON TABLES TO "{reader.user}"', database=catalog.database)
    return reader


def _initdb(bindir: Path, owner: _Owner, files: Paths, catalog: Catalog, say) -> None:
    say(f"initialising a PostgreSQL cluster in {files.lake_pgdata} (runs as user {owner.name})")
    if files.lake_pgdata.exists() and any(files.lake_pgdata.iterdir()):
        raise BrechaError(f"{files.lake_pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION): move it "
                          "away and run `make lake-up` again")
    files.lake_pgdata.mkdir(mode=0o700, exist_ok=True)
    os.chown(files.lake_pgdata, owner.uid, owner.gid)
    for path in (files.lake_log,):
        path.touch(mode=0o600, exist_ok=True)
        os.chown(path, owner.uid, owner.gid)
    if owner.run(["test", "-w", str(files.lake_pgdata)]).returncode != 0:
        raise BrechaError(f"the user {owner.name}, who runs the server, cannot reach {files.lake_pgdata}: a folder above "
                          "it is closed to other users (e.g. a home under /root). Set BRECHA_HOME to a folder every "
                          "user may traverse (chmod o+x on each folder above it), or under /srv or /tmp")
    # the password reaches initdb in a file only the server's user can read, removed at once (never on a command
    # line; a pipe on /dev/stdin is root's and closed to that user)
    pwfile = files.lake / ".initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(catalog.password + "\n")
        os.chown(pwfile, owner.uid, owner.gid)
        owner.run([str(bindir / "initdb"), "-D", str(files.lake_pgdata), "-U", catalog.user, "-A", "scram-sha-256",
                   f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"],
                  check="initialising the lake's PostgreSQL cluster failed")
    finally:
        pwfile.unlink(missing_ok=True)
    conf = ("\n# brecha.core.lake: this home's lake catalog, reachable from this machine only\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {catalog.port}\n"
            "unix_socket_directories = ''\n"
            "password_encryption = 'scram-sha-256'\n"
            "# a writer's session holds the run lock (brecha.core.runlock): when its machine vanishes without closing\n"
            "# the connection, the server gives up on it (and the lock) after about two minutes, not the system's two hours\n"
            "tcp_keepalives_idle = 60\ntcp_keepalives_interval = 10\ntcp_keepalives_count = 6\n")
    with open(files.lake_pgdata / "postgresql.conf", "a") as fh:
        fh.write(conf)


def _start(bindir: Path, owner: _Owner, files: Paths, catalog: Catalog, say) -> None:
    say(f"starting PostgreSQL on 127.0.0.1:{catalog.port} (log {files.lake_log})")
    proc = owner.run([str(bindir / "pg_ctl"), "start", "-D", str(files.lake_pgdata), "-l", str(files.lake_log), "-w",
                      "-t", str(START_TIMEOUT)])
    if proc.returncode != 0:
        log = files.lake_log.read_text(errors="replace")[-1500:] if files.lake_log.is_file() else ""
        hint = (f" (port {catalog.port} is taken by another program: free it, or edit `port` in "
                f"{files.lake_pgdata}/postgresql.conf and the port in {files.lake_env})") if "already in use" in log else ""
        raise BrechaError(f"PostgreSQL did not start{hint}: {(proc.stdout + proc.stderr).strip()[-600:]}\n"
                          f"server log {files.lake_log}:\n{log}")


def down(home: Path, say=print) -> bool:
    """Stop this home's PostgreSQL (fast shutdown: open sessions are ended); whether it was running."""
    files = Paths(Path(home).resolve())
    bindir = pg_bindir()
    if bindir is None or not (files.lake_pgdata / "PG_VERSION").is_file():
        say(f"no lake server in {files.lake_pgdata}: nothing to stop")
        return False
    owner = _Owner.find()
    if not _running(bindir, owner, files):
        say(f"PostgreSQL for {files.home} is not running")
        return False
    owner.run([str(bindir / "pg_ctl"), "stop", "-D", str(files.lake_pgdata), "-m", "fast", "-w", "-t",
               str(START_TIMEOUT)], check="stopping the lake's PostgreSQL failed")
    say(f"PostgreSQL for {files.home} stopped (the catalog and data stay; `make lake-up` starts it again)")
    return True


def status(home: Path, say=print) -> bool:
    files = Paths(Path(home).resolve())
    bindir = pg_bindir()
    running = bool(bindir and (files.lake_pgdata / "PG_VERSION").is_file() and _running(bindir, _Owner.find(), files))
    say(f"lake of {files.home}: " + ("running" if running else "not running")
        + (f", settings in {files.lake_env}" if files.lake_env.is_file() else ""))
    return running


def main(argv: list[str] | None = None) -> int:
    """``python -m brecha.core.lake up|down|status --home H`` (the Makefile's lake targets pass $BRECHA_HOME)."""
    parser = argparse.ArgumentParser(prog="python -m brecha.core.lake", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--home", required=True, type=Path, help="the BRECHA_HOME whose lake this is")
    args = parser.parse_args(argv)
    try:
        result = {"up": up, "down": down, "status": status}[args.action](args.home)
    except BrechaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0 if args.action != "status" or result else 3


if __name__ == "__main__":
    sys.exit(main())
