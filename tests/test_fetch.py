"""`brecha fetch` against a local HTTP server on 127.0.0.1 serving recorded files: a whole download, a transfer cut
short and resumed with a Range request, a server error, a file changed on the server, an unreachable server, a
file whose checksum is not the published one, PUNKU's workbook taken out of a zip; the fetched folder ingests."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from brecha.core.errors import BrechaError
from brecha.extract import fetch as fetch_module
from brecha.extract.fetch import ENAHO_CODES, PINNED, PUNKU_MEMBER, USER_AGENT, fetch


class Recorded:
    """What the server serves and how it misbehaves, per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, list[int]] = {}  # per request, bytes sent before the connection is closed
        self.errors: dict[str, int] = {}  # the next N requests get a 500
        self.log: list[tuple[str, dict[str, str]]] = []


def _handler(rec: Recorded) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server hook
            rec.log.append((self.path, dict(self.headers)))
            if rec.errors.get(self.path, 0) > 0:
                rec.errors[self.path] -= 1
                self.send_error(500, "Internal Server Error")
                return
            body = rec.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            start = 0
            if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(body):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.send_header("ETag", etag)
            self.end_headers()
            cuts = rec.cut_after.get(self.path)
            if cuts:
                self.wfile.write(part[: cuts.pop(0)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

    return Handler


@pytest.fixture
def server():
    rec = Recorded()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield rec, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "RETRY_WAIT", 0.01)


def _enaho_path(year: int, flavour: str = "STATA") -> str:
    return f"/proyectos.inei.gob.pe/iinei/srienaho/descarga/{flavour}/{ENAHO_CODES[year]}-Modulo01.zip"


@pytest.fixture
def recorded_zips(synthetic_dir: Path) -> dict[int, bytes]:
    """INEI's zips as the synthetic extracts record them (2022: Stata, 2023: Stata)."""
    return {y: (synthetic_dir / "inei-enaho" / f"{ENAHO_CODES[y]}-Modulo01.zip").read_bytes() for y in (2022, 2023)}


def test_downloads_with_a_browser_user_agent_and_then_asks_if_changed(server, recorded_zips, tmp_path: Path) -> None:
    rec, url = server
    for year, data in recorded_zips.items():
        rec.files[_enaho_path(year)] = data
    out = tmp_path / "fetched"
    first = fetch(out, [2022, 2023], mirror=url, sources=("enaho",))
    assert [(f.dest, f.status) for f in first.files] == [
        ("inei-enaho/784-Modulo01.zip", "downloaded"),
        ("inei-enaho/906-Modulo01.zip", "downloaded"),
    ]
    for year, data in recorded_zips.items():
        assert (out / f"inei-enaho/{ENAHO_CODES[year]}-Modulo01.zip").read_bytes() == data
    assert all(h["User-Agent"] == USER_AGENT and "Mozilla/5.0" in h["User-Agent"] for _, h in rec.log)
    assert not list((out / ".partial").rglob("*.zip"))
    # a second run asks with the ETag and downloads nothing
    rec.log.clear()
    second = fetch(out, [2022, 2023], mirror=url, sources=("enaho",))
    assert {f.status for f in second.files} == {"unchanged"}
    assert all("If-None-Match" in h for _, h in rec.log)
    assert "next: brecha run --input" in str(second)


def test_a_transfer_cut_short_is_resumed_with_a_range_request(server, recorded_zips, tmp_path: Path) -> None:
    rec, url = server
    data = recorded_zips[2023]
    path = _enaho_path(2023)
    rec.files[path] = data
    half = len(data) // 2
    rec.cut_after[path] = [half]  # the first transfer stops half way
    result = fetch(tmp_path / "f", [2023], mirror=url, sources=("enaho",))
    assert result.files[0].status == "resumed"
    assert (tmp_path / "f/inei-enaho/906-Modulo01.zip").read_bytes() == data
    assert [h.get("Range") for _, h in rec.log] == [None, f"bytes={half}-"]


def test_a_download_interrupted_every_time_is_resumed_by_the_next_run(server, recorded_zips, tmp_path: Path) -> None:
    rec, url = server
    data = recorded_zips[2022]
    path = _enaho_path(2022)
    rec.files[path] = data
    rec.cut_after[path] = [1000, 1000, 1000]
    with pytest.raises(BrechaError, match="interrupted .* 3 times; 3,000 bytes are kept"):
        fetch(tmp_path / "f", [2022], mirror=url, sources=("enaho",))
    assert not (tmp_path / "f/inei-enaho/784-Modulo01.zip").exists()  # nothing incomplete in the ingested folder
    assert (tmp_path / "f/.partial/inei-enaho/784-Modulo01.zip").stat().st_size == 3000
    rec.log.clear()
    result = fetch(tmp_path / "f", [2022], mirror=url, sources=("enaho",))
    assert result.files[0].status == "resumed" and rec.log[0][1]["Range"] == "bytes=3000-"
    assert (tmp_path / "f/inei-enaho/784-Modulo01.zip").read_bytes() == data


def test_server_errors_are_retried_then_reported(server, recorded_zips, tmp_path: Path) -> None:
    rec, url = server
    path = _enaho_path(2023)
    rec.files[path] = recorded_zips[2023]
    rec.errors[path] = 1  # one error, then the file
    assert fetch(tmp_path / "a", [2023], mirror=url, sources=("enaho",)).files[0].status == "downloaded"
    rec.errors[path] = 10
    with pytest.raises(BrechaError, match="answered 500 .*3 attempts.*Try again later"):
        fetch(tmp_path / "b", [2023], mirror=url, sources=("enaho",))
    assert not (tmp_path / "b/inei-enaho").exists()
    with pytest.raises(BrechaError, match="answered 404"):  # an address that is not there: said, not retried
        fetch(tmp_path / "c", [2015], mirror=url, sources=("enaho",))


def test_a_file_changed_on_the_server_is_downloaded_again_and_reported(server, recorded_zips, tmp_path: Path) -> None:
    rec, url = server
    path = _enaho_path(2023)
    rec.files[path] = recorded_zips[2022]
    first = fetch(tmp_path / "f", [2023], mirror=url, sources=("enaho",))
    rec.files[path] = recorded_zips[2023]  # INEI replaced the file
    second = fetch(tmp_path / "f", [2023], mirror=url, sources=("enaho",))
    assert second.files[0].status == "changed" and first.files[0].sha256[:12] in second.files[0].note
    assert second.files[0].sha256 == hashlib.sha256(recorded_zips[2023]).hexdigest()
    assert (tmp_path / "f/inei-enaho/906-Modulo01.zip").read_bytes() == recorded_zips[2023]


def test_offline_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrechaError, match="cannot reach 127.0.0.1.*offline"):
        fetch(tmp_path / "f", [2023], mirror=f"http://127.0.0.1:{port}", sources=("enaho",))


def test_a_pinned_file_with_other_bytes_is_refused(server, tmp_path: Path) -> None:
    rec, url = server
    dest, address, _sha = PINNED[0]
    rec.files["/" + address.split("://", 1)[1]] = b"inei,distrito\n010101,CHACHAPOYAS\n"
    with pytest.raises(BrechaError, match="not the .* of the published version"):
        fetch(tmp_path / "f", [], mirror=url, sources=("reference",))
    assert not (tmp_path / "f" / dest).exists()


def test_pinned_files_fetched_as_published(server, real_dir: Path, tmp_path: Path) -> None:
    rec, url = server
    for dest, address, _sha in PINNED:
        rec.files["/" + address.split("://", 1)[1]] = (real_dir / dest).read_bytes()
    result = fetch(tmp_path / "f", [], mirror=url, sources=("reference",))
    assert len(result.files) == len(PINNED) and {f.status for f in result.files} == {"downloaded"}
    for dest, _address, _sha in PINNED:
        assert (tmp_path / "f" / dest).read_bytes() == (real_dir / dest).read_bytes()


def test_punku_workbook_is_taken_out_of_its_zip_and_the_folder_ingests(
    server, synthetic_dir: Path, recorded_zips, tmp_path: Path, brecha_home: Path
) -> None:
    from brecha.landing.ingest import ingest

    rec, url = server
    workbook = (synthetic_dir / "osiptel-punku" / PUNKU_MEMBER).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("1. TELEFONIA FIJA/1.1 LINEAS EN SERVICIO.xlsx", b"another indicator")
        zf.writestr(f"2. INTERNET FIJO/{PUNKU_MEMBER}", workbook)
    rec.files["/punku.example/datasets/punku.zip"] = buf.getvalue()
    rec.files[_enaho_path(2023)] = recorded_zips[2023]
    out = tmp_path / "f"
    result = fetch(
        out, [2023], punku_url="https://punku.example/datasets/punku.zip", mirror=url, sources=("enaho", "punku")
    )
    assert (out / "osiptel-punku" / PUNKU_MEMBER).read_bytes() == workbook
    assert sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    ) == ["inei-enaho/906-Modulo01.zip", f"osiptel-punku/{PUNKU_MEMBER}"]
    assert not result.skipped
    # what was fetched is what `brecha run --input` ingests (the hidden partial, zip and manifest are skipped)
    (out / "ubigeo_distrito.csv").write_bytes(next(synthetic_dir.rglob("ubigeo_distrito.csv")).read_bytes())
    landed = ingest(out)
    by_entity = {f.entity: f for f in landed.files}
    assert by_entity["inei__enaho_households"].rows_rejected == 0
    assert by_entity["osiptel__fixed_connections"].rows_landed > 0
    # without an address PUNKU is skipped with the reason
    _, skipped = fetch_module.catalogue([2023], sources=("punku",))
    assert "no stable address" in skipped[0]
