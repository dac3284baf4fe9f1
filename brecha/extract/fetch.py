"""``brecha fetch``: download the extracts a run reads from where they are published, into one folder to ingest.

What is fetched (``catalogue``):

* INEI's ENAHO module 01 per year, ``{code}-Modulo01.zip`` from INEI's microdata server, in the flavour asked
  (``STATA`` by default; ``CSV`` or ``SPSS``). The year -> code table is INEI's (the elpapx/enahopy package
  builds the same addresses); INEI's server refuses clients that do not look like a browser, so every request
  carries a browser-like User-Agent. Their checksums are not published: the first download's is recorded, and
  a later download with other bytes is reported as changed.
* OSIPTEL PUNKU's dataset, when its address is given (``punku_url``): PUNKU publishes no stable address for its
  download, so Brecha does not guess one. A zip is searched for ``2.3 CONEXIONES DE INTERNET FIJO POR
  DISTRITO.xlsx`` and that workbook alone is put in the folder (the zip's other workbooks are other indicators).
* The other public files the project reads, from the repositories they are published in, at the commit their
  real copies come from (../shared/data/real/PROVENANCE.md): these have a fixed content, so their SHA-256 is
  known and a download with other bytes is refused.

How: each file goes to ``<folder>/.partial/`` first and is resumed from there with an HTTP ``Range`` request
after an interruption (in the same run, up to ``ATTEMPTS`` times, or in a later run); a complete file is
checked (its size against Content-Length, its SHA-256 against the known one, a zip's CRCs) and only then moved
into place. ``<folder>/.fetched.json`` records each file's address, SHA-256, size, ETag and Last-Modified; a
file already there is asked for again with ``If-None-Match`` / ``If-Modified-Since`` and is not downloaded
again unless the server has other bytes. Files under hidden folders are not read by ``brecha ingest``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brecha.core.errors import BrechaError
from brecha.core.files import write_atomic

USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
              "Safari/537.36")
TIMEOUT = 60  # seconds without a byte before a download counts as interrupted
CHUNK = 1 << 16
ATTEMPTS = 3  # tries per file in one run (an interrupted download is resumed where it stopped)
RETRY_WAIT = 1.0  # seconds before the next try (doubled each time)
MANIFEST = ".fetched.json"
PARTIAL = ".partial"
ZIPS = ".zips"  # downloads kept beside the folder's data (a zip whose one member is extracted)

ENAHO_SERVER = "https://proyectos.inei.gob.pe/iinei/srienaho/descarga"
ENAHO_CODES = {2015: 498, 2016: 546, 2017: 603, 2018: 634, 2019: 687, 2020: 737, 2021: 759, 2022: 784, 2023: 906,
               2024: 966}
ENAHO_FLAVOURS = ("STATA", "CSV", "SPSS")
PUNKU_MEMBER = "2.3 CONEXIONES DE INTERNET FIJO POR DISTRITO.xlsx"

_RAW = "https://raw.githubusercontent.com"
# (folder/file in the fetched folder, address at the pinned commit, SHA-256 of those bytes)
PINNED: tuple[tuple[str, str, str], ...] = (
    ("ubigeo-aumentado/ubigeo_distrito.csv",
     f"{_RAW}/jmcastagnetto/ubigeo-peru-aumentado/a783fa66effb16fa8f3321b49a3d5e71cab15a5c/ubigeo_distrito.csv",
     "6a2cde8fb82e336285da4d684241450e8a36630e42799652c8d72b596ec252e4"),
    ("ubigeo-aumentado/ubigeo_provincia.csv",
     f"{_RAW}/jmcastagnetto/ubigeo-peru-aumentado/a783fa66effb16fa8f3321b49a3d5e71cab15a5c/ubigeo_provincia.csv",
     "832eab7cc4da217093f7d363e0a3d7873dbe6a3df694541d542f55ca94fcb3fb"),
    ("ubigeo-aumentado/ubigeo_departamento.csv",
     f"{_RAW}/jmcastagnetto/ubigeo-peru-aumentado/a783fa66effb16fa8f3321b49a3d5e71cab15a5c/ubigeo_departamento.csv",
     "4362c5ee7cfd0631938e365c7cf96c6340b1be4e2acb0e852206f2f65cca0097"),
    ("qhaway/indicadores-distrito.json",
     f"{_RAW}/unimauro/qhaway-dashboard/5cbf007d5c7b57a0f9d51c2beeaeb54360baa8a0/public/data/indicadores-distrito.json",
     "ca662e0737492a3ffefa30bb61206fae6b10cd856c2f16b86fed5f46365914cd"),
    ("peru-geojson/peru_distrital_simple.geojson",
     f"{_RAW}/juaneladio/peru-geojson/3213eeb1bbe537f88dead45a2aadaa276fa9451d/peru_distrital_simple.geojson",
     "1eba0da33464b0818f05bfcf066672e6c9cf979ddc0549c8c2e9ca4d0122ac73"),
    ("peru-geojson/peru_departamental_simple.geojson",
     f"{_RAW}/juaneladio/peru-geojson/3213eeb1bbe537f88dead45a2aadaa276fa9451d/peru_departamental_simple.geojson",
     "3d34d5450a1b1f059eebdf7386e5b5d071a5063bf3679fcbbbc5314493791290"),
    ("mafeer29-cobertura/COBERTURA_MOVIL_CUANTIFICADA.xlsx",
     f"{_RAW}/mafeer29/PROYECTO_POO/15d1e61f74c01e9755c4d0f7a67f38b47758d9b8/ANALIZADOR/COBERTURA_MOVIL_CUANTIFICADA.xlsx",
     "36ac5a9f6e66a9df3aa8172828f910126968138f6394185b13ee22430c6b4e4a"),
    ("hubergilt-osiptel/IndMovil-C21.xlsx",
     f"{_RAW}/hubergilt/telecom/5bdebb50a904201060381d8261bebcc50431e0da/movil/IndMovil-C21.xlsx",
     "eb009dfd7fb3ff30a92cc54b05cbabc5343fd387f248cd34db55fdc938d406ab"),
    ("hubergilt-osiptel/IndMovil-C21.csv",
     f"{_RAW}/hubergilt/telecom/5bdebb50a904201060381d8261bebcc50431e0da/movil/IndMovil-C21.csv",
     "67a9b8a0e1642b48cbd7b5b2c55842528230fbf9382407ad9cec345d2690db50"),
    ("hubergilt-osiptel/IndMovil-C23.csv",
     f"{_RAW}/hubergilt/telecom/5bdebb50a904201060381d8261bebcc50431e0da/movil/IndMovil-C23.csv",
     "2e14e3d5a45b15ae0ceb11d2e45929633a2f104186108b20cff6b61fe97a8f67"),
    ("hubergilt-osiptel/moviles-lineas_C2.2_junio2014.csv",
     f"{_RAW}/hubergilt/telecom/5bdebb50a904201060381d8261bebcc50431e0da/movil/moviles-lineas_C2.2_junio2014.csv",
     "a0fec5530e3a7bca06cbd4e63a19b3ba3877b72fc97badb4dedf1af2fe5c5b77"),
    ("hubergilt-osiptel/8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv",
     f"{_RAW}/hubergilt/telecom/5bdebb50a904201060381d8261bebcc50431e0da/rural/data/"
     "8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv",
     "12d4933569ca2ddec8faad8d28590ce65de63f90459a99bf9e4a07abe19bb143"),
)


@dataclass(frozen=True)
class Remote:
    """One file to fetch."""

    dest: str  # path in the fetched folder ('' for a zip whose member is extracted: see ``member``)
    url: str
    sha256: str = ""  # the known checksum ('' when the publisher gives none: recorded on first download)
    member: str = ""  # a zip's member (by file name) to extract to ``dest`` instead of keeping the zip

    @property
    def download(self) -> str:
        """Where the downloaded bytes are kept, relative to the folder."""
        if self.member:
            return f"{ZIPS}/{Path(urllib.parse.urlparse(self.url).path).name or 'download.zip'}"
        return self.dest


@dataclass
class Fetched:
    dest: str
    status: str  # 'downloaded' | 'resumed' | 'unchanged' | 'changed'
    sha256: str
    size: int
    note: str = ""


@dataclass
class FetchResult:
    folder: Path
    files: list[Fetched] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"fetched into {self.folder} ({self.seconds:.1f} s):"]
        width = max((len(f.dest) for f in self.files), default=0)
        for f in self.files:
            lines.append(f"  {f.dest:<{width}}  {f.status:<10}  {f.size / 1e6:8.2f} MB  sha256 {f.sha256[:12]}"
                         + (f"  ({f.note})" if f.note else ""))
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines.append(f"next: brecha run --input {self.folder}")
        return "\n".join(lines)


def enaho_url(year: int, flavour: str = "STATA") -> str:
    if year not in ENAHO_CODES:
        known = f"{min(ENAHO_CODES)}-{max(ENAHO_CODES)}"
        raise BrechaError(f"ENAHO {year}: its INEI download code is not known to Brecha (known years: {known}). "
                          f"Download {{code}}-Modulo01.zip for {year} from INEI's microdata site by hand and put it "
                          "in the folder you ingest.")
    if flavour.upper() not in ENAHO_FLAVOURS:
        raise BrechaError(f"ENAHO flavour {flavour!r}: use one of {', '.join(ENAHO_FLAVOURS)}")
    return f"{ENAHO_SERVER}/{flavour.upper()}/{ENAHO_CODES[year]}-Modulo01.zip"


def catalogue(years: list[int], flavour: str = "STATA", punku_url: str | None = None,
              sources: tuple[str, ...] = ("enaho", "punku", "reference")) -> tuple[list[Remote], list[str]]:
    """The files to fetch, and what is left out and why."""
    remotes: list[Remote] = []
    skipped: list[str] = []
    if "reference" in sources:
        remotes += [Remote(dest, url, sha) for dest, url, sha in PINNED]
    if "enaho" in sources:
        remotes += [Remote(f"inei-enaho/{ENAHO_CODES.get(y, y)}-Modulo01.zip", enaho_url(y, flavour)) for y in years]
    if "punku" in sources:
        if punku_url:
            path = urllib.parse.urlparse(punku_url).path
            member = PUNKU_MEMBER if path.lower().endswith(".zip") else ""
            remotes.append(Remote(f"osiptel-punku/{PUNKU_MEMBER}", punku_url, member=member))
        else:
            skipped.append("OSIPTEL PUNKU fixed connections: no stable address is published; download the dataset "
                           f"('{PUNKU_MEMBER}') from PUNKU and give its address with --punku-url, or put the file "
                           "in the folder")
    return remotes, skipped


def _mirrored(url: str, mirror: str | None) -> str:
    """``url`` on ``mirror`` (same path), for a local copy of the sources or a test server."""
    if not mirror:
        return url
    parts = urllib.parse.urlparse(url)
    return mirror.rstrip("/") + "/" + parts.netloc + parts.path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class _Bar:
    """A byte progress bar on stderr (rich draws it only on a terminal)."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress

    @contextmanager
    def task(self, name: str, total: int | None, done: int) -> Iterator[Any]:
        if self._progress is None:
            yield lambda n: None
            return
        task = self._progress.add_task(name, total=total, completed=done)
        try:
            yield lambda n: self._progress.update(task, advance=n)
        finally:
            self._progress.remove_task(task)


@contextmanager
def _progress_bar() -> Iterator[_Bar]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield _Bar(None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as progress:
        yield _Bar(progress)


def _request(url: str, headers: dict[str, str]) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*", **headers})
    return urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310 - http(s) addresses of the catalogue


def _unreachable(url: str, err: Exception) -> BrechaError:
    host = urllib.parse.urlparse(url).netloc
    return BrechaError(f"cannot reach {host} ({getattr(err, 'reason', err)}): this machine seems to be offline or "
                       f"the server is down. Nothing was changed; run `brecha fetch` again when online, or download "
                       f"{url} by hand into the folder you ingest")


def _download(url: str, part: Path, known: dict[str, Any] | None, bar: _Bar, name: str) -> tuple[str, dict[str, Any]]:
    """Download ``url`` into ``part`` (resuming what it holds). Returns ('not-modified' | 'complete', headers)."""
    done = part.stat().st_size if part.exists() else 0
    headers: dict[str, str] = {}
    if done:
        headers["Range"] = f"bytes={done}-"
    elif known:
        if known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
    try:
        resp = _request(url, headers)
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return "not-modified", {}
        if err.code == 416 and done:  # the partial file is longer than the file now served: start again
            part.unlink()
            return _download(url, part, known, bar, name)
        raise
    with resp:
        status = resp.status
        meta = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
        length = resp.headers.get("Content-Length")
        if status == 206 and done:
            total = done + int(length) if length is not None else None
            mode = "ab"
        else:  # the server sent the whole file (it ignored the Range): start again
            done, mode = 0, "wb"
            total = int(length) if length is not None else None
        meta["size"] = total
        with part.open(mode) as fh, bar.task(name, total, done) as advance:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                advance(len(chunk))
    got = part.stat().st_size
    if total is not None and got != total:
        raise ConnectionError(f"the transfer stopped at {got:,} of {total:,} bytes")
    return "complete", meta


def _check(remote: Remote, path: Path) -> str:
    sha = _sha256(path)
    if remote.sha256 and sha != remote.sha256:
        raise BrechaError(f"{remote.url}: the file served has SHA-256 {sha[:12]}…, not the {remote.sha256[:12]}… of "
                          "the published version Brecha reads; it was not used (the publisher changed it, or a proxy "
                          "altered it). Check the address, or use the file you trust by putting it in the folder")
    if path.name.lower().endswith((".zip", ".xlsx")):
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except zipfile.BadZipFile as err:
            raise BrechaError(f"{remote.url}: the download is not a valid zip ({err}); the server may have sent an "
                              "error page. Try again later, or download it in a browser") from err
        if bad is not None:
            raise BrechaError(f"{remote.url}: the download is damaged (member {bad} fails its CRC); run `brecha "
                              "fetch` again")
    return sha


def _extract_member(zip_path: Path, member_name: str, dest: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        found = [n for n in zf.namelist() if Path(n).name.casefold() == member_name.casefold()]
        if not found:
            raise BrechaError(f"{zip_path.name}: no '{member_name}' inside (it holds {len(zf.namelist())} files, e.g. "
                              f"{', '.join(zf.namelist()[:5])}); give the address of PUNKU's dataset download")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(found[0]) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out)


def fetch_one(remote: Remote, folder: Path, manifest: dict[str, Any], bar: _Bar, mirror: str | None = None) -> Fetched:
    """Fetch ``remote`` into ``folder`` (see the module docstring); updates ``manifest`` in place."""
    url = _mirrored(remote.url, mirror)
    target = folder / remote.download
    part = folder / PARTIAL / remote.download
    part.parent.mkdir(parents=True, exist_ok=True)
    known = manifest.get(remote.download) if target.is_file() else None
    if known and known.get("sha256") != _sha256(target):
        known = None  # the file was changed by hand: fetch it again
    resumed = part.exists() and part.stat().st_size > 0
    wait = RETRY_WAIT
    for attempt in range(1, ATTEMPTS + 1):
        try:
            outcome, meta = _download(url, part, known, bar, Path(remote.download).name)
            break
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt == ATTEMPTS:
                raise BrechaError(f"{url}: the server answered {err.code} {err.reason} ({attempt} "
                                  f"attempt{'s' if attempt > 1 else ''}). "
                                  + ("Try again later (a server error)" if err.code >= 500 else
                                     "The address may have changed: check it on the publisher's site")) from err
        except urllib.error.URLError as err:
            raise _unreachable(url, err) from err
        except (ConnectionError, TimeoutError, OSError, http.client.HTTPException) as err:  # interrupted: resume
            resumed = True
            if attempt == ATTEMPTS:
                have = part.stat().st_size if part.exists() else 0
                raise BrechaError(f"{url}: the download was interrupted ({err}) {ATTEMPTS} times; {have:,} bytes are "
                                  f"kept in {part} and `brecha fetch` resumes from there") from err
        time.sleep(wait)
        wait *= 2
    if outcome == "not-modified":
        assert known is not None
        return Fetched(remote.dest, "unchanged", known["sha256"], known["size"])
    sha = _check(remote, part)
    previous = manifest.get(remote.download, {}).get("sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, target)
    size = target.stat().st_size
    if remote.member:
        _extract_member(target, remote.member, folder / remote.dest)
    manifest[remote.download] = {"url": remote.url, "sha256": sha, "size": size, "etag": meta.get("etag"),
                                 "last_modified": meta.get("last_modified"),
                                 "fetched_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if previous and previous != sha:
        return Fetched(remote.dest, "changed", sha, size, f"the server's file changed: it was {previous[:12]}…")
    if previous == sha:
        return Fetched(remote.dest, "unchanged", sha, size, "downloaded again: same bytes")
    return Fetched(remote.dest, "resumed" if resumed else "downloaded", sha, size)


def fetch(folder: Path, years: list[int], flavour: str = "STATA", punku_url: str | None = None,
          mirror: str | None = None, sources: tuple[str, ...] = ("enaho", "punku", "reference")) -> FetchResult:
    """Fetch the catalogue's files into ``folder`` (created); stop at the first file that cannot be fetched,
    keeping every file fetched before it and the manifest."""
    clock = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remotes, skipped = catalogue(years, flavour, punku_url, sources)
    result = FetchResult(folder, skipped=skipped)
    manifest = _read_manifest(folder)
    try:
        with _progress_bar() as bar:
            for remote in remotes:
                result.files.append(fetch_one(remote, folder, manifest, bar, mirror))
    finally:
        write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    result.seconds = time.perf_counter() - clock
    return result
