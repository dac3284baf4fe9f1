"""Fixed facts the synthetic world is built on: Peru's 25 departments with their published codes.

Department codes, names, ISO/FIPS codes, RENIEC codes, capitals, macro-regions, the number of provinces
(196 in all) and of complete districts (1,874 in all), centroids, spreads and areas are public facts about
Peru; everything below the department level is generated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Department:
    code: str  # INEI 2-digit code
    name: str  # as in the INEI reference: upper case, no accents
    title: str  # as OSIPTEL publishes it: title case with accents
    reniec: str  # RENIEC's own 2-digit code (differs from INEI's from Callao on)
    iso: str
    fips: str
    capital: str
    macro_inei: str
    macro_minsa: str
    n_districts: int  # complete districts in the reference
    n_provinces: int
    lat: float
    lon: float
    lat_sd: float
    lon_sd: float
    area_km2: float
    # probabilities of the natural regions (costa, sierra, selva) of its districts
    costa: float
    sierra: float
    selva: float


def _d(code, name, title, reniec, iso, fips, capital, mi, mm, nd, np_, lat, lon, lsd, osd, area, costa, sierra, selva):
    return Department(code, name, title, reniec, iso, fips, capital, mi, mm, nd, np_, lat, lon, lsd, osd, area,
                      costa, sierra, selva)


DEPARTMENTS: tuple[Department, ...] = (
    _d("01", "AMAZONAS", "Amazonas", "01", "PE-AMA", "01", "Chachapoyas", "ORIENTE", "MACROREGION ORIENTE", 84, 7, -6.11, -77.93, 0.47, 0.30, 39249, 0.0, 0.55, 0.45),
    _d("02", "ANCASH", "Áncash", "02", "PE-ANC", "02", "Huaraz", "CENTRO", "MACROREGION NORTE", 166, 20, -9.32, -77.58, 0.60, 0.39, 35881, 0.1, 0.9, 0.0),
    _d("03", "APURIMAC", "Apurímac", "03", "PE-APU", "03", "Abancay", "SUR", "MACROREGION CENTRO", 84, 7, -13.92, -73.09, 0.29, 0.43, 20896, 0.0, 1.0, 0.0),
    _d("04", "AREQUIPA", "Arequipa", "04", "PE-ARE", "04", "Arequipa", "SUR", "MACROREGION SUR", 109, 8, -15.96, -72.35, 0.54, 0.87, 63344, 0.3, 0.7, 0.0),
    _d("05", "AYACUCHO", "Ayacucho", "05", "PE-AYA", "05", "Ayacucho", "CENTRO", "MACROREGION CENTRO", 119, 11, -13.87, -74.00, 0.80, 0.38, 43803, 0.0, 0.92, 0.08),
    _d("06", "CAJAMARCA", "Cajamarca", "06", "PE-CAJ", "06", "Cajamarca", "NORTE", "MACROREGION NORTE", 127, 13, -6.62, -78.70, 0.61, 0.35, 33304, 0.05, 0.85, 0.1),
    _d("07", "CALLAO", "Callao", "24", "PE-CAL", "07", "Callao", "LIMA METROPOLITANA", "LIMA Y CALLAO", 7, 1, -12.01, -77.13, 0.05, 0.02, 146, 1.0, 0.0, 0.0),
    _d("08", "CUSCO", "Cusco", "07", "PE-CUS", "08", "Cusco", "SUR", "MACROREGION SUR", 112, 13, -13.72, -71.90, 0.60, 0.56, 71986, 0.0, 0.85, 0.15),
    _d("09", "HUANCAVELICA", "Huancavelica", "08", "PE-HUV", "09", "Huancavelica", "CENTRO", "MACROREGION CENTRO", 100, 7, -12.86, -74.92, 0.51, 0.35, 22125, 0.0, 1.0, 0.0),
    _d("10", "HUANUCO", "Huánuco", "09", "PE-HUC", "10", "Huánuco", "CENTRO", "MACROREGION CENTRO", 84, 11, -9.61, -76.40, 0.45, 0.49, 37263, 0.0, 0.7, 0.3),
    _d("11", "ICA", "Ica", "10", "PE-ICA", "11", "Ica", "CENTRO", "MACROREGION CENTRO", 43, 5, -13.96, -75.72, 0.51, 0.39, 21306, 0.9, 0.1, 0.0),
    _d("12", "JUNIN", "Junín", "11", "PE-JUN", "12", "Huancayo", "CENTRO", "MACROREGION CENTRO", 124, 9, -11.75, -75.38, 0.35, 0.37, 44329, 0.0, 0.85, 0.15),
    _d("13", "LA LIBERTAD", "La Libertad", "12", "PE-LAL", "13", "Trujillo", "NORTE", "MACROREGION NORTE", 83, 12, -7.88, -78.43, 0.37, 0.69, 25495, 0.3, 0.7, 0.0),
    _d("14", "LAMBAYEQUE", "Lambayeque", "13", "PE-LAM", "14", "Chiclayo", "NORTE", "MACROREGION NORTE", 38, 3, -6.64, -79.73, 0.26, 0.19, 14462, 0.95, 0.05, 0.0),
    _d("15", "LIMA", "Lima", "14", "PE-LIM", "15", "Lima", "CENTRO", "LIMA Y CALLAO", 171, 10, -11.94, -76.65, 0.65, 0.49, 34824, 0.45, 0.55, 0.0),
    _d("16", "LORETO", "Loreto", "15", "PE-LOR", "16", "Iquitos", "ORIENTE", "MACROREGION ORIENTE", 53, 8, -4.60, -74.29, 1.54, 1.66, 368799, 0.0, 0.0, 1.0),
    _d("17", "MADRE DE DIOS", "Madre de Dios", "16", "PE-MDD", "17", "Puerto Maldonado", "SUR", "MACROREGION SUR", 11, 3, -12.29, -69.99, 0.72, 0.76, 85301, 0.0, 0.0, 1.0),
    _d("18", "MOQUEGUA", "Moquegua", "17", "PE-MOQ", "18", "Moquegua", "SUR", "MACROREGION SUR", 20, 3, -16.80, -70.91, 0.46, 0.24, 15734, 0.2, 0.8, 0.0),
    _d("19", "PASCO", "Pasco", "18", "PE-PAS", "19", "Cerro de Pasco", "CENTRO", "MACROREGION CENTRO", 29, 3, -10.52, -76.01, 0.24, 0.49, 25026, 0.0, 0.75, 0.25),
    _d("20", "PIURA", "Piura", "19", "PE-PIU", "20", "Piura", "NORTE", "MACROREGION NORTE", 65, 8, -5.01, -80.38, 0.34, 0.57, 35656, 0.75, 0.25, 0.0),
    _d("21", "PUNO", "Puno", "20", "PE-PUN", "21", "Puno", "SUR", "MACROREGION SUR", 110, 13, -15.24, -69.93, 0.80, 0.51, 66994, 0.0, 0.95, 0.05),
    _d("22", "SAN MARTIN", "San Martín", "21", "PE-SAM", "22", "Moyobamba", "ORIENTE", "MACROREGION ORIENTE", 77, 10, -6.69, -76.60, 0.59, 0.38, 51306, 0.0, 0.0, 1.0),
    _d("23", "TACNA", "Tacna", "22", "PE-TAC", "23", "Tacna", "SUR", "MACROREGION SUR", 28, 4, -17.64, -70.28, 0.30, 0.23, 16076, 0.4, 0.6, 0.0),
    _d("24", "TUMBES", "Tumbes", "23", "PE-TUM", "24", "Tumbes", "NORTE", "MACROREGION NORTE", 13, 3, -3.66, -80.47, 0.14, 0.21, 4668, 1.0, 0.0, 0.0),
    _d("25", "UCAYALI", "Ucayali", "25", "PE-UCA", "25", "Pucallpa", "ORIENTE", "MACROREGION ORIENTE", 17, 4, -9.11, -74.25, 0.87, 1.17, 102199, 0.0, 0.0, 1.0),
)

BY_CODE: dict[str, Department] = {d.code: d for d in DEPARTMENTS}

# Peru's bounding box (lat, lon): generated centroids stay inside it.
LAT_RANGE = (-18.3, -0.1)
LON_RANGE = (-81.3, -68.7)

LIMA_METRO_PROVINCE = "1501"  # Lima Metropolitana: region 'LIMA PROVINCIA', ISO PE-LMA, FIPS 26

# Mobile operators, spelled as in the MTC/OSIPTEL coverage registry, in the file's block order.
MOBILE_OPERATORS: tuple[str, ...] = (
    "Viettel Perú S.A.C.",
    "Telefónica del Perú S.A.A.",
    "América Móvil Perú S.A.C.",
    "Entel Perú S.A.",
)

# Department poverty in the reference is published as band midpoints.
POVERTY_BANDS = (8.95, 17.3, 26.25, 32.95, 43.65)
EXTREME_POVERTY_BANDS = (0.55, 3.05, 7.3, 12.95)

# Census 2017 population per department (rounded): district populations are scaled to these totals.
DEPARTMENT_POPULATION: dict[str, int] = {
    "01": 430_000, "02": 1_206_000, "03": 424_000, "04": 1_631_000, "05": 661_000, "06": 1_444_000,
    "07": 1_228_000, "08": 1_388_000, "09": 325_000, "10": 742_000, "11": 1_084_000, "12": 1_383_000,
    "13": 2_068_000, "14": 1_372_000, "15": 11_462_000, "16": 1_063_000, "17": 203_000, "18": 173_000,
    "19": 263_000, "20": 2_173_000, "21": 1_200_000, "22": 950_000, "23": 402_000, "24": 270_000, "25": 641_000,
}
