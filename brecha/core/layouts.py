"""The published layouts of the INEI and OSIPTEL extracts, and the raw tables they land in.

This module is the contract between the synthetic generator (which writes files in these layouts),
the landing step (which recognises files by header and content and lands them) and the dbt sources
(which read ``raw.<source>__<entity>``). One ``Layout`` per kind of file.

Every raw table also carries the lineage columns in ``LINEAGE_COLUMNS``.
"""

from __future__ import annotations

from dataclasses import dataclass

LINEAGE_COLUMNS: dict[str, str] = {
    "_source_file": "VARCHAR",  # path of the file as it was found (relative to the ingested folder)
    "_source_sha256": "VARCHAR",  # checksum of the file's bytes; the archive stores the file under it
    "_loaded_at": "TIMESTAMP",  # when the file was first landed
    "_row_number": "BIGINT",  # 1-based record number in the file (the sheet row, for stacked sheets)
}

# Text that means "no value" in these extracts.
NULL_STRINGS = ("", "NA", "N.A.", "S.I.", "-", "--")  # S.I. = "sin información" (superficie in ubigeo_distrito.csv)


@dataclass(frozen=True)
class Column:
    """One landed column: its raw name, the header it comes from, and the checks applied at landing."""

    name: str  # snake_case name in the raw table
    header: str  # header text in the source file (exact, accents included); "" when derived by a parser
    type: str  # DuckDB type the text is cast to; a value that fails the cast is rejected with its row
    required: bool = True  # a file without this column stops with an error naming the column
    key: bool = False  # part of the row's natural key within one file: duplicates are rejected
    non_negative: bool = False  # negative values are rejected
    flag: bool = False  # must be 0 or 1
    share: bool = False  # a percentage: must lie within 0..100
    positive: bool = False  # must be > 0 (e.g. a survey expansion weight)
    ubigeo: int = 0  # >0: the column holds a ubigeo whose first 6 digits (after left-padding to this
    #                  many digits) must be a district of the reference; rows with unknown codes are rejected
    not_null: bool = False  # a row without a value here is rejected
    pad: int = 0  # >0: a code of this many digits; a shorter all-digit value (a spreadsheet dropped its leading
    #              zeros) is left-padded once, at landing, before any check (duplicates included) and stored so;
    #              a value that is not all digits is rejected ("malformed code")
    geometry: bool = False  # GeoJSON geometry: a non-null value that is not a well-formed (Multi)Polygon or
    #                         Point (closed rings of numeric positions) is rejected ("invalid geometry")
    between: tuple[float, float] | None = None  # (lo, hi): a value outside lo..hi is rejected ("outside lo..hi")
    # Value labels (Stata / SPSS, or a CSV exported from them with the labels applied): (label, code) pairs. A
    # value that is not a number is looked up by its label (case, accents, surrounding and repeated blanks
    # ignored) and lands as the code, so a labelled file lands to the same values as INEI's coded CSV.
    labels: tuple[tuple[str, str], ...] = ()
    other_label: str = ""  # the code of any other label: for INEI's two-valued "good or 'pase'" questions


# Peru's bounding box, in decimal degrees (WGS84), with a small margin: the country spans about -18.35..-0.04
# latitude and -81.33..-68.65 longitude. Landing rejects a reference row whose centroid lies outside it; no other
# layer checks coordinates.
PERU_LATITUDE = (-18.5, 0.1)
PERU_LONGITUDE = (-81.5, -68.5)


@dataclass(frozen=True)
class Layout:
    """One kind of file: how to recognise it and where it lands."""

    entity: str  # raw table name without schema, ``<source>__<entity>``
    kind: str  # csv | json | xlsx | geojson | xlsx_stacked | csv_wide
    description: str
    columns: tuple[Column, ...]
    example_names: tuple[str, ...] = ()  # published file names (a hint only; recognition uses headers)
    encoding: str = "utf-8"  # the published encoding; utf-8 files are also accepted for latin-1 layouts

    @property
    def table(self) -> str:
        return f"raw.{self.entity}"

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns if c.header)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)


def _c(name: str, header: str, type_: str = "VARCHAR", **kw: object) -> Column:
    return Column(name, header, type_, **kw)  # type: ignore[arg-type]


def _optional(name: str, header: str, type_: str = "VARCHAR", **kw: object) -> Column:
    return Column(name, header, type_, required=False, **kw)  # type: ignore[arg-type]


# --- INEI reference (ubigeo-peru-aumentado) -------------------------------------------------------------
_REFERENCE_TAIL = (
    _optional("iso_3166_2", "iso_3166_2"),
    _optional("fips", "fips"),
    _c("capital", "capital"),
    _c("superficie", "superficie", "DOUBLE", non_negative=True),
    _c("pob_densidad_2020", "pob_densidad_2020", "DOUBLE", non_negative=True),
    _c("altitude", "altitude", "DOUBLE"),
    _c("latitude", "latitude", "DOUBLE", between=PERU_LATITUDE),  # centroid
    _c("longitude", "longitude", "DOUBLE", between=PERU_LONGITUDE),
    _optional("indice_vulnerabilidad_alimentaria", "indice_vulnerabilidad_alimentaria", "DOUBLE"),
    _c("idh_2019", "idh_2019", "DOUBLE"),
    _c("pct_pobreza_total", "pct_pobreza_total", "DOUBLE", share=True),
    _c("pct_pobreza_extrema", "pct_pobreza_extrema", "DOUBLE", share=True),
)

INEI_DISTRICTS = Layout(
    entity="inei__districts",
    kind="csv",
    description="INEI district reference: names, capital, area, altitude, centroid, density 2020, poverty 2018, IDH 2019",
    example_names=("ubigeo_distrito.csv",),
    columns=(
        _c("inei", "inei", key=True, not_null=True, pad=6),  # 6-char ubigeo with leading zeros: the key
        _optional("reniec", "reniec"),  # RENIEC's own code: differs from inei, never a key
        _c("departamento", "departamento"),
        _c("provincia", "provincia"),
        _c("distrito", "distrito"),
        _optional("region", "region"),
        _c("macroregion_inei", "macroregion_inei"),
        _optional("macroregion_minsa", "macroregion_minsa"),
        *_REFERENCE_TAIL,
    ),
    # the published file: one row has an empty inei (rejected: missing key); 19 newer districts carry NA in numeric columns
)

INEI_PROVINCES = Layout(
    entity="inei__provinces",
    kind="csv",
    description="INEI province reference",
    example_names=("ubigeo_provincia.csv",),
    columns=(
        _c("inei", "inei", key=True, not_null=True, pad=6),
        _optional("reniec", "reniec"),
        _c("departamento", "departamento"),
        _c("provincia", "provincia"),
        _optional("region", "region"),
        _optional("macroregion_inei", "macroregion_inei"),
        _optional("macroregion_minsa", "macroregion_minsa"),
        *_REFERENCE_TAIL[:-4],
        _optional("indice_densidad_estado", "indice_densidad_estado", "DOUBLE"),
        *_REFERENCE_TAIL[-4:],
    ),
)

INEI_DEPARTMENTS = Layout(
    entity="inei__departments",
    kind="csv",
    description="INEI department reference (poverty values are band midpoints)",
    example_names=("ubigeo_departamento.csv",),
    columns=(
        _c("inei", "inei", key=True, not_null=True, pad=6),
        _optional("reniec", "reniec"),
        _c("departamento", "departamento"),
        *_REFERENCE_TAIL[:-4],
        _optional("indice_densidad_estado", "indice_densidad_estado", "DOUBLE"),
        *_REFERENCE_TAIL[-4:],
    ),
)

# --- INEI Census 2017 district indicators (qhaway) -----------------------------------------------------
INEI_CENSUS = Layout(
    entity="inei__census_indicators",
    kind="json",
    description="Census 2017 district indicators: % of households with internet, electricity, water, sewage; "
    "population; poverty; IDH; altitude",
    example_names=("indicadores-distrito.json",),
    columns=(
        _c("ubigeo", "ubigeo", key=True, not_null=True, ubigeo=6, pad=6),
        _c("pob", "pob", "BIGINT", non_negative=True),
        _c("idh", "idh", "DOUBLE"),
        _c("pobreza", "pobreza", "DOUBLE", share=True),
        _optional("pobreza_ext", "pobrezaExt", "DOUBLE", share=True),
        _optional("vuln_alim", "vulnAlim", "DOUBLE", share=True),
        _c("altitud", "altitud", "DOUBLE"),
        _c("agua", "agua", "DOUBLE", share=True),
        _c("desague", "desague", "DOUBLE", share=True),
        _c("electricidad", "electricidad", "DOUBLE", share=True),
        _c("internet", "internet", "DOUBLE", share=True),
        _optional("ide_agua", "ideAgua", "DOUBLE"),
        _optional("ide_electricidad", "ideElectricidad", "DOUBLE"),
        _optional("ide_salud", "ideSalud", "DOUBLE"),
        _optional("ide_educacion", "ideEducacion", "DOUBLE"),
    ),
)

# --- OSIPTEL / MTC mobile coverage per populated centre and operator ----------------------------------
OSIPTEL_MOBILE_COVERAGE = Layout(
    entity="osiptel__mobile_coverage",
    kind="xlsx",
    description="Mobile coverage per populated centre (centro poblado) and operator: 2G/3G/4G/5G flags, "
    "speed class, base stations per technology",
    example_names=("COBERTURA_MOVIL_CUANTIFICADA.xlsx",),
    columns=(
        _c("departamento", "DEPARTAMENTO"),
        _c("provincia", "PROVINCIA"),
        _c("distrito", "DISTRITO"),
        _c("centro_poblado", "CENTRO_POBLADO"),
        # an integer that lost its leading zero: left-pad to 10 digits, the first 6 are the district
        _c("ubigeo_ccpp", "UBIGEO_CCPP", "BIGINT", key=True, not_null=True, ubigeo=10),
        _c("empresa_operadora", "EMPRESA_OPERADORA", key=True, not_null=True),
        _c("has_2g", "2G", "INTEGER", flag=True),
        _c("has_3g", "3G", "INTEGER", flag=True),
        _c("has_4g", "4G", "INTEGER", flag=True),
        _c("has_5g", "5G", "INTEGER", flag=True),
        _c("hasta_1_mbps", "HASTA_1_MBPS", "INTEGER", flag=True),
        _c("mas_de_1_mbps", "MÁS_DE_1_MBPS", "INTEGER", flag=True),
        _c("cant_eb_2g", "CANT_EB_2G", "INTEGER", non_negative=True),
        _c("cant_eb_3g", "CANT_EB_3G", "INTEGER", non_negative=True),
        _c("cant_eb_4g", "CANT_EB_4G", "INTEGER", non_negative=True),
        _c("cant_eb_5g", "CANT_EB_5G", "INTEGER", non_negative=True),
        _optional("calificacion", "CALIFICACION", "INTEGER"),  # derived, not source data
        _optional("cant_eb_total", "CANT_EB_TOTAL", "INTEGER"),  # derived, not source data
    ),
)

# --- OSIPTEL mobile lines in service by department (Cuadro 2.1) ---------------------------------------
# Two published shapes land in the same table, in long form:
#  * IndMovil-C21.xlsx: a stacked sheet (title rows, notes, yearly and monthly blocks, '-' for missing,
#    'Sin LAC' and 'Total Perú' rows). Parsed block by block in Python.
#  * IndMovil-C21.csv: one row per department, columns iden, Departamento, 2003..2018.
OSIPTEL_MOBILE_LINES = Layout(
    entity="osiptel__mobile_lines",
    kind="xlsx_stacked|csv_wide",
    description="Mobile lines in service by department and period (Cuadro 2.1), long form",
    example_names=("IndMovil-C21.xlsx", "IndMovil-C21.csv"),
    columns=(
        _c("departamento", "Departamento", key=True, not_null=True),  # as published: title case, accents
        _c("period", "", "DATE", key=True, not_null=True),  # first day of the year or month
        _c("granularity", "", key=True, not_null=True),  # 'year' | 'month'
        _c("lines", "", "BIGINT", non_negative=True),
        _c("block", "", "INTEGER"),  # which stacked block of the sheet (1 for the csv)
    ),
)

OSIPTEL_MOBILE_LINE_SHARE = Layout(
    entity="osiptel__mobile_line_share",
    kind="csv_wide",
    description="Share (%) of national mobile lines by department and year (Cuadro 2.3), long form",
    example_names=("IndMovil-C23.csv",),
    columns=(
        _c("departamento", "Departmento", key=True, not_null=True),  # header misspelled as published
        _c("year", "", "INTEGER", key=True, not_null=True),
        _c("share_pct", "", "DOUBLE", share=True),
    ),
)

OSIPTEL_MOBILE_TELEDENSITY = Layout(
    entity="osiptel__mobile_teledensity",
    kind="csv_wide",
    description="Mobile lines per 100 inhabitants by department and year (Cuadro 2.2), long form",
    example_names=("moviles-lineas_C2.2_junio2014.csv",),
    columns=(
        _c("departamento", "Departamento", key=True, not_null=True),
        _c("year", "", "INTEGER", key=True, not_null=True),
        _c("lines_per_100", "", "DOUBLE", non_negative=True),
    ),
)

OSIPTEL_INTERNET_BOOTHS = Layout(
    entity="osiptel__internet_booths",
    kind="csv_wide",
    description="Public internet booths (cabinas) by department and operator (Cuadro 8.8), long form",
    example_names=("8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv",),
    columns=(
        _c("departamento", "DEPARTAMENTO", key=True, not_null=True),
        _c("operador", "", key=True, not_null=True),
        _c("cabinas", "", "BIGINT", non_negative=True),
    ),
)

# --- OSIPTEL PUNKU fixed internet connections by district (no real sample: synthetic only) ------------
# PUNKU's download is an xlsx (sheet Dataset, title rows above the header, monthly periods, Segmento in mixed
# case); older extracts are CSVs of quarters. Connections are a stock at the end of each period.
OSIPTEL_FIXED_CONNECTIONS = Layout(
    entity="osiptel__fixed_connections",
    kind="csv",
    description="Fixed internet connections by district, period (month or quarter), operator, technology and "
    "segment (PUNKU); keyed by names, not ubigeo",
    example_names=("2.3 CONEXIONES DE INTERNET FIJO POR DISTRITO.xlsx", "conexiones_internet_fijo_distrito.csv"),
    columns=(
        _c("periodo", "Periodo", key=True, not_null=True),  # a month 2024-01 (PUNKU), or a quarter 2015-T1
        _c("empresa", "Empresa", key=True, not_null=True),
        _c("departamento", "Departamento", key=True, not_null=True),
        _c("provincia", "Provincia", key=True, not_null=True),
        _c("distrito", "Distrito", key=True, not_null=True),
        _c("tecnologia", "Tecnología", key=True, not_null=True),
        _c("segmento", "Segmento", key=True, not_null=True),
        _c("conexiones", "Conexiones", "BIGINT", non_negative=True, not_null=True),
    ),
)

# --- INEI ENAHO module 01 (table enaho01-YYYY-100), one row per household (5 real rows; synthetic otherwise) ---
# INEI publishes it per year as ``{code}-Modulo01.zip`` in three flavours: CSV (latin-1, codes; upper-case
# headers AÑO, MES, ...; the 2025 file ';'-separated), Stata .dta and SPSS .sav (codes with value labels; Stata
# names are lower case, ``aÑo``). Analysts also export the .dta to CSV with the labels applied (the real sample:
# UTF-8 with a BOM, ``aÑo``, ``dominio`` = ``selva``, ``estrato`` = `` de 20 000 a 49 999 habitantes``, ``result``
# = ``completa``, ``p1144`` = ``conexion a internet`` or ``pase``). Headers match without case or accents (AÑO,
# aÑo and ANO all read as ``ano``); the labels below map such an export back to INEI's codes. From 2023 P1144
# counts any internet access (members' mobile data included) and P114B1..3 split it (fixed, mobile postpaid,
# mobile prepaid); earlier files have no P114B columns.
ENAHO_DOMAINS = (("costa norte", "1"), ("costa centro", "2"), ("costa sur", "3"), ("sierra norte", "4"),
                 ("sierra centro", "5"), ("sierra sur", "6"), ("selva", "7"), ("lima metropolitana", "8"))
ENAHO_STRATA = (("de 500 000 a mas habitantes", "1"), ("de 100 000 a 499 999 habitantes", "2"),
                ("de 50 000 a 99 999 habitantes", "3"), ("de 20 000 a 49 999 habitantes", "4"),
                ("de 2 000 a 19 999 habitantes", "5"), ("de 500 a 1 999 habitantes", "6"),
                ("area de empadronamiento rural (aer) compuesto", "7"), ("aer compuesto", "7"),
                ("area de empadronamiento rural (aer) simple", "8"), ("aer simple", "8"))
ENAHO_RESULTS = (("completa", "1"), ("incompleta", "2"), ("rechazo", "3"), ("ausente", "4"),
                 ("vivienda desocupada", "5"), ("no se inicio entrevista", "6"), ("otro", "7"))
ENAHO_COMPLETE = 1  # RESULT of a completed interview; the others have blank ICT answers
# P1141..P1145 and P114B1..3 are two-valued: 0 'pase' (the good was not named), 1 the good's own label
ENAHO_GOOD = {"labels": (("pase", "0"),), "other_label": "1", "flag": True}

INEI_ENAHO = Layout(
    entity="inei__enaho_households",
    kind="csv",
    encoding="latin-1",
    description="ENAHO module 01 (dwelling and household, table enaho01-YYYY-100): ICT goods per household "
    "with interview result, design variables and expansion weight",
    example_names=("enaho01-2023-100.csv", "enaho01-2023-100.dta", "enaho01-2023-100.sav", "906-Modulo01.zip"),
    columns=(
        _c("anio", "AÑO", "INTEGER", key=True, not_null=True, between=(2000, 2035)),  # survey year
        _c("mes", "MES", "INTEGER", between=(1, 12)),  # interview month
        _c("conglome", "CONGLOME", key=True, not_null=True),  # conglomerate: the primary sampling unit
        _c("vivienda", "VIVIENDA", key=True, not_null=True),
        _c("hogar", "HOGAR", key=True, not_null=True),
        _c("ubigeo", "UBIGEO", not_null=True, ubigeo=6, pad=6),
        _c("dominio", "DOMINIO", "INTEGER", labels=ENAHO_DOMAINS),
        _c("estrato", "ESTRATO", "INTEGER", labels=ENAHO_STRATA),  # the design's stratum within a department
        _optional("result", "RESULT", "INTEGER", labels=ENAHO_RESULTS, between=(1, 7)),  # interview result
        _c("p1141", "P1141", "INTEGER", **ENAHO_GOOD),  # fixed phone
        _c("p1142", "P1142", "INTEGER", **ENAHO_GOOD),  # mobile phone
        _c("p1143", "P1143", "INTEGER", **ENAHO_GOOD),  # cable TV
        _c("p1144", "P1144", "INTEGER", **ENAHO_GOOD),  # internet (from 2023 any access, mobile data included)
        _c("p1145", "P1145", "INTEGER", **ENAHO_GOOD),  # none of these
        _optional("p114b1", "P114B1", "INTEGER", **ENAHO_GOOD),  # from 2023: fixed internet
        _optional("p114b2", "P114B2", "INTEGER", **ENAHO_GOOD),  # from 2023: mobile internet, postpaid
        _optional("p114b3", "P114B3", "INTEGER", **ENAHO_GOOD),  # from 2023: mobile internet, prepaid
        _c("factor07", "FACTOR07", "DOUBLE", not_null=True, positive=True),  # expansion weight: must be > 0
    ),
)

# --- District and department boundaries (GeoJSON) ------------------------------------------------------
GEO_DISTRICTS = Layout(
    entity="geo__district_boundaries",
    kind="geojson",
    description="District boundaries (simplified), one feature per district; geometry kept as GeoJSON text",
    example_names=("peru_distrital_simple.geojson",),
    columns=(
        _c("iddist", "IDDIST", key=True, not_null=True, pad=6),
        _optional("nombdist", "NOMBDIST"),
        _optional("nombprov", "NOMBPROV"),
        _optional("nombdep", "NOMBDEP"),
        _c("geometry", "", "JSON", geometry=True),  # null for features without geometry
    ),
)

GEO_DEPARTMENTS = Layout(
    entity="geo__department_boundaries",
    kind="geojson",
    description="Department boundaries (simplified); geometry kept as GeoJSON text",
    example_names=("peru_departamental_simple.geojson",),
    columns=(
        _c("first_iddp", "FIRST_IDDP", key=True, not_null=True, pad=2),
        _optional("nombdep", "NOMBDEP"),
        _c("geometry", "", "JSON", geometry=True),
    ),
)

LAYOUTS: tuple[Layout, ...] = (
    INEI_DISTRICTS,
    INEI_PROVINCES,
    INEI_DEPARTMENTS,
    INEI_CENSUS,
    OSIPTEL_MOBILE_COVERAGE,
    OSIPTEL_MOBILE_LINES,
    OSIPTEL_MOBILE_LINE_SHARE,
    OSIPTEL_MOBILE_TELEDENSITY,
    OSIPTEL_INTERNET_BOOTHS,
    OSIPTEL_FIXED_CONNECTIONS,
    INEI_ENAHO,
    GEO_DISTRICTS,
    GEO_DEPARTMENTS,
)

BY_ENTITY: dict[str, Layout] = {layout.entity: layout for layout in LAYOUTS}


def raw_table_ddl(layout: Layout) -> str:
    """CREATE TABLE statement for the raw table of ``layout`` (lineage columns first)."""
    cols = [f'"{n}" {t}' for n, t in LINEAGE_COLUMNS.items()]
    cols += [f'"{c.name}" {c.type}' for c in layout.columns]
    return f"CREATE TABLE IF NOT EXISTS {layout.table} ({', '.join(cols)})"


# --- Bookkeeping tables of the landing step (schema raw) -----------------------------------------------
# One ingest of a folder is one *batch*: the folder is taken to be the complete set of extracts. The dbt
# staging models read, for every raw table, only the rows of the files of the latest successful batch
# (``raw._batch_files``), so re-landing an unchanged file changes nothing and a folder of real files
# never mixes with an earlier synthetic one. "The latest successful batch" is defined once, by the view
# ``raw._latest_ok_batch`` (LATEST_OK_BATCH): dbt staging (macro latest_batch_rows), the gates
# (brecha.warehouse.gates.latest_ok_batch), the GX batches and the tests all read it.
LATEST_OK_BATCH = "raw._latest_ok_batch"
BOOKKEEPING_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS raw",
    """CREATE TABLE IF NOT EXISTS raw._batches (
        batch_id INTEGER PRIMARY KEY,      -- 1, 2, 3 ... in landing order
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        input_dir VARCHAR NOT NULL,
        status VARCHAR NOT NULL             -- 'running' | 'ok' | 'failed' | 'aborted' (killed; marked so by the next ingest)
    )""",
    """CREATE TABLE IF NOT EXISTS raw._batch_files (
        batch_id INTEGER NOT NULL,
        entity VARCHAR NOT NULL,            -- raw table (without schema) the file lands in
        source_file VARCHAR NOT NULL,       -- path relative to the ingested folder
        sha256 VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        rows_landed BIGINT NOT NULL,
        rows_rejected BIGINT NOT NULL,
        newly_landed BOOLEAN NOT NULL,      -- false when the same bytes had been landed before
        archived_as VARCHAR NOT NULL        -- path under $BRECHA_HOME/archive
    )""",
    """CREATE TABLE IF NOT EXISTS raw._rejects (
        _source_file VARCHAR NOT NULL,
        _source_sha256 VARCHAR NOT NULL,
        _loaded_at TIMESTAMP NOT NULL,
        _row_number BIGINT,
        entity VARCHAR NOT NULL,
        column_name VARCHAR,
        value VARCHAR,
        reason VARCHAR NOT NULL,            -- e.g. 'unparseable DOUBLE', 'unknown ubigeo', 'duplicate key', 'negative count'
        record JSON                         -- the whole row as text, so nothing is lost
    )""",
    f"""CREATE OR REPLACE VIEW {LATEST_OK_BATCH} AS  -- one row (none before the first successful batch)
        SELECT batch_id, input_dir, started_at, finished_at FROM raw._batches
        WHERE status = 'ok' ORDER BY batch_id DESC LIMIT 1""",
)
