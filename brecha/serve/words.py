"""What a reader of the atlas and the API reads, in Spanish (the default) and English.

Mart column names stay English; everything rendered for a person (titles, legends, notes, messages) comes from
here, by language code. ``pick(lang)`` validates the code once at the entry point (CLI, API request).
"""

from __future__ import annotations

import math

LANGS = ("es", "en")
DEFAULT_LANG = "es"


def pick(lang: str | None) -> str:
    """A supported language code from ``lang`` (``es``, ``en``, or an Accept-Language value); Spanish otherwise."""
    if not lang:
        return DEFAULT_LANG
    for part in lang.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return DEFAULT_LANG


def number(v: float | None, digits: int = 1, unit: str = "", lang: str = DEFAULT_LANG) -> str:
    """``v`` with thousands grouped and ``digits`` decimals: 12 345,6 in Spanish (INEI's style), 12,345.6 in English;
    an en dash when unknown."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    text = f"{v:,.{digits}f}"
    if lang == "es":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text + unit


def signed(v: float | None, digits: int = 1, unit: str = "", lang: str = DEFAULT_LANG) -> str:
    """Like ``number`` with a sign (+1,5 / −1,5); zero unsigned."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    r = round(v, digits)
    if r == 0:
        return number(0.0, digits, unit, lang)
    return ("+" if r > 0 else "−") + number(abs(r), digits, unit, lang)


# map_reason (mart_district_profile) -> why the district is a point, for the English atlas (the Spanish one shows the
# mart's own map_note)
MAP_REASON_EN = {
    "recoded_polygon": "polygon of the 2016 boundary file, which has it under its older code {boundary}",
    "inside_parent_polygon": "created{law} from {parent}: the 2016 boundary file does not have it; shown as a point at "
                             "its centroid, inside its parent district's polygon",
    "null_geometry": "the boundary file has this district with an empty geometry: shown as a point at its centroid",
    "not_in_boundaries": "the boundary file does not have this district: shown as a point at its centroid",
    "no_reference_data": "created after the INEI reference's data (no centroid, census or prediction): approximate "
                         "point at the centroid of {where}",
}

# map_reason -> the annex's short "why" (one line a row)
SHORT_REASON = {
    "es": {"inside_parent_polygon": "creado{law} de {parent}: dentro de su polígono",
           "null_geometry": "sin geometría en el archivo de límites",
           "not_in_boundaries": "no está en el archivo de límites",
           "no_reference_data": "sin datos en la referencia INEI; punto aprox. en {where}",
           "parent_centroid": "su distrito de origen", "province_capital_centroid": "la capital provincial"},
    "en": {"inside_parent_polygon": "created{law} from {parent}: inside its polygon",
           "null_geometry": "empty geometry in the boundary file",
           "not_in_boundaries": "not in the boundary file",
           "no_reference_data": "no data in the INEI reference; approx. point at {where}",
           "parent_centroid": "its parent district", "province_capital_centroid": "the province capital"},
}

ATLAS = {
    "es": {
        "title": "Brecha — atlas distrital de la brecha digital del Perú",
        "h1": "La brecha digital del Perú, distrito por distrito",
        "intro": "Atlas de la copia publicada de Brecha{snapshot}: {n} distritos de la referencia del INEI en "
                 "{deps} departamentos; {polygons} se dibujan con su polígono y {markers} como punto (sin polígono "
                 "propio en el archivo de límites; la lista está al final).",
        "reading": "Cómo leer los mapas: en cada mapa, el rojo más oscuro es peor (menos hogares conectados, una "
                   "brecha más ancha, una proporción censal más por debajo de lo que el modelo predice); el gris es "
                   "sin valor. Las clases de la proporción con internet y del índice de brecha son cuantiles de los "
                   "distritos, con la cola superior en clases propias. Los contornos son los departamentos. Un punto "
                   "con borde negro es un distrito sin polígono propio, en su centroide. Intervalos: 90 %.",
        "contents": "Contenido", "whole": "atlas completo", "annex": "Distritos dibujados como punto",
        "clusters_title": "Dónde se agrupa la brecha",
        "clusters_note": "I de Moran local (LISA) sobre el grafo de vecinos de los distritos (contigüidad tipo reina "
                         "de los límites; los k centroides más cercanos para los distritos sin polígono o sin "
                         "vecinos), 999 permutaciones, p ≤ 0,05. «Alto» y «bajo» son relativos a la media nacional de "
                         "cada medida. Una región baja-baja de conexión rezaga en conjunto: una sola red troncal "
                         "puede servirla; un distrito bajo-alto aislado pide un proyecto de última milla.",
        "moran": "I de Moran global = {i} (p por permutación = {p}, {n} permutaciones)",
        "known": "{known} distritos tienen valor; {polygons} se dibujan con polígono y {markers} como punto.",
        "no_value": "sin valor",
        "point_legend": "punto: distrito sin polígono propio (en su centroide)",
        "measures": {
            "internet_pct": "Hogares con internet (Censo 2017)",
            "divide_index": "Índice de brecha digital (0 = la más estrecha, 100 = la más ancha)",
            "gap_pp": "Diferencia: proporción censal menos la predicción del modelo (pp)",
        },
        "direction": {
            "internet_pct": "rojo más oscuro = menos hogares con internet",
            "divide_index": "rojo más oscuro = brecha más ancha",
            "gap_pp": "rojo: la proporción censal está por debajo de lo que el modelo predice según el perfil del "
                      "distrito",
        },
        "gap_below": "por debajo en más de {v} pp", "gap_above": "por encima en más de {v} pp",
        "gap_between": "{a} a {b} pp",
        "cluster_meaning": {
            "internet_pct": {"low-low": "región rezagada en conjunto (baja entre bajos)", "high-high": "región conectada",
                             "low-high": "distrito rezagado entre conectados",
                             "high-low": "distrito conectado entre rezagados"},
            "divide_index": {"high-high": "región de brecha ancha en conjunto", "low-low": "región de brecha estrecha",
                             "high-low": "brecha ancha entre estrechas", "low-high": "brecha estrecha entre anchas"},
            "gap_pp": {"low-low": "distritos por debajo de lo esperado, juntos",
                       "high-high": "distritos por encima de lo esperado, juntos",
                       "low-high": "por debajo del modelo entre distritos por encima",
                       "high-low": "por encima del modelo entre distritos por debajo"},
        },
        "cluster_names": {"high-high": "alto-alto", "low-low": "bajo-bajo", "high-low": "alto-bajo",
                          "low-high": "bajo-alto", "not significant": "no significativo"},
        "not_significant": "sin patrón significativo",
        "dep_note": "{n} distritos, {pop} habitantes (proyección INEI 2025); mediana de hogares con internet (censo) {median}. Distritos "
                    "coloreados por índice de brecha; los números marcan las {top} prioridades de la tabla.",
        "dep_points": "Dibujados como punto ({n}): {names}.",
        "no_polygon_dep": "Ningún distrito de este departamento tiene polígono en el archivo de límites.",
        "inset_lima": "Lima Metropolitana y Callao",
        "inset_zoom": "Ampliación: {names}",
        "trend_title": "Tendencia: hogares con internet (ENAHO) y conexiones fijas (PUNKU)",
        # the department page's short note; the whole explanation once, on the cover (trend_reading)
        "trend_note": "ENAHO{years}: porcentaje ponderado de hogares, banda de 90 %; en 2023 cambió la pregunta (una "
                      "línea por pregunta). Discontinua: conexiones fijas (PUNKU) por 100 hogares.",
        "trend_reading": "Tendencias de cada departamento: porcentaje ponderado de hogares de la ENAHO con banda de "
                         "90 % (± 1,645 errores estándar del diseño). En 2023 cambió la pregunta (P1144 cuenta desde "
                         "entonces cualquier acceso, datos móviles incluidos; P114B1 es el internet fijo): cada "
                         "pregunta es una línea propia y no se comparan a través de la marca. Línea discontinua: "
                         "conexiones fijas de OSIPTEL por 100 hogares al cierre de cada trimestre.",
        "trend_series": ["Internet del hogar (P1144, hasta 2022)", "Cualquier acceso (P1144, desde 2023)",
                         "Internet fijo (P114B1, desde 2023)"],
        "trend_punku": "Conexiones fijas por 100 hogares (PUNKU)",
        "trend_break": "cambio de cuestionario →",
        "trend_break_tip": "2023: cambia la pregunta P1144 (cualquier acceso, datos móviles incluidos); las series no "
                           "son comparables",
        "no_trend": "Ningún año de la ENAHO para este departamento.",
        "top_title": "Distritos prioritarios: lente de brecha",
        "top_lens_note": "Orden de la lente de brecha (priority_rank): donde la brecha es más ancha y la proporción "
                         "censal queda muy por debajo de lo que predice el perfil del distrito; para fondos de "
                         "servicio universal y programas rurales. La lente de hogares sin internet "
                         "(offline_priority_rank, para programas urbanos) está en marts.mart_district_priorities.",
        "headers": ["#", "Distrito", "Prioridad", "Censo", "Predicción (intervalo de 90 %)", "Diferencia", "Por qué"],
        "no_prediction": "Sin predicción para los distritos de este departamento.",
        "oof_note": "Predicción, intervalo y diferencia fuera de la muestra: del modelo de validación cruzada espacial "
                    "que no vio el departamento del distrito.",
        "fold_note": "Predicción fuera de la muestra (validación cruzada espacial por departamento), salvo † : "
                     "distrito sin proporción censal, predicho por el modelo final.",
        "annex_note": "Estos distritos no tienen polígono propio en el archivo de límites de 2016 y aparecen en los "
                      "mapas como un punto con borde negro en su centroide (o, sin centroide en la referencia, en un "
                      "punto aproximado). El motivo de cada uno:",
        "annex_headers": ["Ubigeo", "Distrito", "Provincia", "Departamento", "Motivo"],
        "law_by": " por {law}",
        "title_tip": "{district} ({province}): índice de brecha {divide}, internet {internet}",
        "reason": {
            "offline": "unos {n} hogares sin internet",
            "below": "{gap} pp por debajo del {pred} % que predice su perfil{edge}",
            "below_interval": ": bajo su intervalo de 90 %", "within_interval": " (dentro de su intervalo de 90 %)",
            "above": "proporción conectada igual o superior a la que predice su perfil",
            "unknown": "sin proporción censal: la predicción la reemplaza",
            "low-low": "sus vecinos también están rezagados (agrupamiento bajo-bajo de internet)",
            "low-high": "rezagado con vecinos conectados (bajo-alto)",
            "divide": "índice de brecha {v}/100 (puesto {rank} del Perú)",
            "weakest": "su punto más débil: {part} (peor que el {v} % de los distritos)",
            "parts": {"infrastructure": "la infraestructura", "adoption": "la adopción",
                      "socioeconomic": "las condiciones socioeconómicas"},
        },
    },
    "en": {
        "title": "Brecha — district atlas of Peru's digital divide",
        "h1": "Peru's digital divide, district by district",
        "intro": "An atlas from the Brecha serving copy{snapshot}: {n} districts of the INEI reference in {deps} "
                 "departments; {polygons} are drawn with their polygon and {markers} as a point (no polygon of their "
                 "own in the boundary file; the list is at the end).",
        "reading": "Reading the maps: on every map darker red is worse (fewer households online, a wider divide, a "
                   "census share further below what the model predicts); grey is no value. Classes of the internet "
                   "share and the divide index are quantiles of the districts, with the upper tail in classes of its "
                   "own. Outlines are the departments. A point with a black edge is a district without a polygon of "
                   "its own, at its centroid. Intervals: 90 %.",
        "contents": "Contents", "whole": "whole atlas", "annex": "Districts drawn as a point",
        "clusters_title": "Where the divide clusters",
        "clusters_note": "Local Moran's I (LISA) over the district neighbour graph (queen contiguity of the "
                         "boundaries; k nearest centroids for districts without a polygon or touching none), 999 "
                         "permutations, p ≤ 0.05. \"High\" and \"low\" are relative to the national mean of each "
                         "measure. A low-low region of internet share lags together: one backbone may serve it; an "
                         "isolated low-high district calls for a last-mile project.",
        "moran": "Global Moran's I = {i} (permutation p = {p}, {n} permutations)",
        "known": "{known} districts have a value; {polygons} are drawn as polygons and {markers} as points.",
        "no_value": "no value",
        "point_legend": "point: district without a polygon of its own (at its centroid)",
        "measures": {
            "internet_pct": "Households with internet (Census 2017)",
            "divide_index": "Digital divide index (0 = narrowest, 100 = widest)",
            "gap_pp": "Gap: census share minus the model's prediction (pp)",
        },
        "direction": {
            "internet_pct": "darker red = fewer households online",
            "divide_index": "darker red = wider divide",
            "gap_pp": "red: the census share is below what the model predicts from the district's profile",
        },
        "gap_below": "below by more than {v} pp", "gap_above": "above by more than {v} pp",
        "gap_between": "{a} to {b} pp",
        "cluster_meaning": {
            "internet_pct": {"low-low": "a region lagging together (low share among low neighbours)",
                             "high-high": "a connected region", "low-high": "a lagging district among connected ones",
                             "high-low": "a connected district among lagging ones"},
            "divide_index": {"high-high": "a region where the divide is wide together",
                             "low-low": "a region with a narrow divide",
                             "high-low": "a wide divide among narrow ones", "low-high": "a narrow divide among wide ones"},
            "gap_pp": {"low-low": "districts below what the model expects, together",
                       "high-high": "districts above what the model expects, together",
                       "low-high": "below the model among districts above it",
                       "high-low": "above the model among districts below it"},
        },
        "cluster_names": {"high-high": "high-high", "low-low": "low-low", "high-low": "high-low",
                          "low-high": "low-high", "not significant": "not significant"},
        "not_significant": "no significant pattern",
        "dep_note": "{n} districts, {pop} inhabitants (INEI projection for 2025); median census share online {median}. Districts coloured by "
                    "divide index; numbers mark the top {top} priorities below.",
        "dep_points": "Drawn as a point ({n}): {names}.",
        "no_polygon_dep": "No district of this department has a polygon in the boundaries file.",
        "inset_lima": "Lima Metropolitana and Callao",
        "inset_zoom": "Enlarged: {names}",
        "trend_title": "Trend: households with internet (ENAHO) and fixed connections (PUNKU)",
        "trend_note": "ENAHO{years}: weighted share of households, 90 % band; the question changed in 2023 (one line "
                      "per question). Dashed: fixed connections (PUNKU) per 100 households.",
        "trend_reading": "Each department's trend: ENAHO's weighted share of households with a 90 % band (± 1.645 "
                         "design standard errors). In 2023 the question changed (P1144 counts any access since, "
                         "members' mobile data included; P114B1 is fixed internet): each question is its own line, "
                         "not compared across the mark. Dashed line: OSIPTEL fixed connections per 100 households at "
                         "the end of each quarter.",
        "trend_series": ["Household internet (P1144, to 2022)", "Any access (P1144, from 2023)",
                         "Fixed internet (P114B1, from 2023)"],
        "trend_punku": "Fixed connections per 100 households (PUNKU)",
        "trend_break": "questionnaire change →",
        "trend_break_tip": "2023: question P1144 changes (any access, members' mobile data included); the series are "
                           "not comparable",
        "no_trend": "No ENAHO survey year for this department.",
        "top_title": "Top-priority districts: divide lens",
        "top_lens_note": "Ranked by the divide lens (priority_rank): where the divide is widest and the census share "
                         "is far below what the district's profile predicts; for universal-service and rural "
                         "programmes. The households-offline lens (offline_priority_rank, for urban programmes) is in "
                         "marts.mart_district_priorities.",
        "headers": ["#", "District", "Priority", "Census", "Predicted (90 % interval)", "Gap", "Why"],
        "no_prediction": "No prediction for this department's districts.",
        "oof_note": "Prediction, interval and gap out of fold: from the spatial cross-validation model that never saw "
                    "the district's department.",
        "fold_note": "Predictions out of fold (spatial cross-validation by department), except † : a district without "
                     "a census share, predicted by the final model.",
        "annex_note": "These districts have no polygon of their own in the 2016 boundary file and appear on the maps "
                      "as a point with a black edge at their centroid (or, without a centroid in the reference, at an "
                      "approximate point). Why, for each:",
        "annex_headers": ["Ubigeo", "District", "Province", "Department", "Why"],
        "law_by": " by {law}",
        "title_tip": "{district} ({province}): divide index {divide}, internet {internet}",
        "reason": {
            "offline": "about {n} households offline",
            "below": "{gap} pp below the {pred} % its profile predicts{edge}",
            "below_interval": " — below its 90 % interval", "within_interval": " (within its 90 % interval)",
            "above": "online share at or above what its profile predicts",
            "unknown": "no census share: the prediction stands in",
            "low-low": "its neighbours lag too (low-low internet cluster)",
            "low-high": "lags while its neighbours are connected (low-high)",
            "divide": "divide index {v}/100 (rank {rank} of Peru)",
            "weakest": "weakest on {part} (worse than {v} % of districts)",
            "parts": {"infrastructure": "infrastructure", "adoption": "adoption",
                      "socioeconomic": "socioeconomic conditions"},
        },
    },
}

# The API's human-readable messages (``detail[].msg``, the what-if's note), by key; ``{}`` fields are filled by
# the raiser. Spanish unless the request asks for English (``?lang=en`` or ``Accept-Language: en``).
API = {
    "es": {
        "associational": "Asociativo, no causal: el escenario es lo que el modelo predice para un distrito cuyas "
                         "variables se vieran así, aprendido de cómo difieren los distritos entre sí. No estima lo que "
                         "causaría una intervención; las demás variables se mantienen en los valores del distrito, "
                         "aunque en la realidad se mueven juntas (las variables calculadas a partir de una "
                         "cambiada se recalculan, o se nombran en held_fixed).",
        "not_found": "no hay un distrito con ubigeo {ubigeo} en la copia publicada",
        "no_prediction": "el distrito {ubigeo} no tiene una predicción publicada en la copia publicada",
        "rank_order": "rank_min ({rank_min}) es mayor que rank_max ({rank_max})",
        "unknown_value": "{field} {value!r} no está en la copia publicada (p. ej. {example})",
        "unknown_segment": "segment_id {value} no está en la copia publicada (conocidos: {known})",
        "no_overrides": "indique al menos una variable a cambiar, p. ej. {example}",
        "not_used": "el modelo publicado ({model}, corrida {run}) no usa la variable {name}; usa: {features}",
        "out_of_range": "{name} = {value} está fuera de su rango válido {low}..{high} ({source})",
        "unknown_feature": "variable desconocida {name!r}: GET /model lista las variables que un escenario puede fijar",
        "no_copy": "{path} no existe: publique primero con `brecha publish` (o `brecha run`)",
        "no_predictions": "{path} no tiene filas en {table}: ejecute `brecha train`, `brecha build` y `brecha publish` "
                          "(o `brecha run`)",
        "no_runs_table": "{path} no tiene la tabla ml.model_runs: publique un almacén entrenado",
        "no_selected": "{path}: la corrida {run} no tiene modelo seleccionado en ml.model_runs",
        "no_artifact": "falta o no se puede leer el artefacto de la corrida {run} ({model}) en {path} de este "
                       "BRECHA_HOME: sirva desde el BRECHA_HOME que lo entrenó, o entrene de nuevo (`brecha train`) "
                       "y publique",
        "unreadable_copy": "{path} no se puede abrir como base DuckDB: publique de nuevo con `brecha publish` (o "
                           "vuelva a la copia anterior con `brecha publish --rollback`)",
        "bad_body": "el cuerpo de la solicitud no es un JSON legible (UTF-8, anidamiento moderado, números de menos "
                    "de 4300 cifras), p. ej. {example}",
        "body_too_large": "el cuerpo de la solicitud supera el límite de {limit}: un escenario ocupa unos pocos "
                          "cientos de bytes",
        "lake_unpublished": "no hay nada publicado en el lago todavía: ejecute `brecha run` (o `brecha publish`)",
        "lake_unreachable": "no se puede leer el catálogo del lago (BRECHA_LAKE_READER): ¿está en marcha su "
                            "PostgreSQL (`make lake-up`) y es accesible desde este servidor?",
        "lake_no_artifact": "las consultas de distritos responden, pero /model y los what-if necesitan el artefacto del "
                            "modelo de la corrida {run} ({model}), y no está en {path} de este BRECHA_HOME: los "
                            "artefactos no van en el lago, quedan en $BRECHA_HOME/artifacts de la máquina que entrenó. "
                            "Copie la carpeta artifacts/{run}/ de esa máquina a la carpeta artifacts/ de este "
                            "BRECHA_HOME (p. ej. con rsync) o sirva la API desde esa máquina; no hace falta reiniciar",
    },
    "en": {
        "associational": "Associational, not causal: the scenario is what the model predicts for a district whose "
                         "features look like this, learned from how districts differ from each other. It is not an "
                         "estimate of what an intervention would cause; the other features are held at the "
                         "district's values, although in reality they move together (features computed from an "
                         "overridden one are recomputed, or named in held_fixed).",
        "not_found": "no district with ubigeo {ubigeo} in the served copy",
        "no_prediction": "district {ubigeo} has no published prediction in the served copy",
        "rank_order": "rank_min ({rank_min}) is greater than rank_max ({rank_max})",
        "unknown_value": "{field} {value!r} is not in the served copy (e.g. {example})",
        "unknown_segment": "segment_id {value} is not in the served copy (known: {known})",
        "no_overrides": "give at least one feature to change, e.g. {example}",
        "not_used": "feature {name} is not used by the served model ({model}, run {run}); it uses: {features}",
        "out_of_range": "{name} = {value} is outside its valid range {low}..{high} ({source})",
        "unknown_feature": "unknown feature {name!r}: GET /model lists the features a what-if may set",
        "no_copy": "{path} does not exist: publish first with `brecha publish` (or `brecha run`)",
        "no_predictions": "{path} has no {table} rows: run `brecha train`, `brecha build` and `brecha publish` (or "
                          "`brecha run`)",
        "no_runs_table": "{path} has no ml.model_runs table: publish a trained warehouse",
        "no_selected": "{path}: run {run} has no selected model in ml.model_runs",
        "no_artifact": "the artifact of run {run} ({model}) is missing or unreadable at {path} in this BRECHA_HOME: "
                       "serve from the BRECHA_HOME that trained it, or train again (`brecha train`) and publish",
        "unreadable_copy": "{path} cannot be opened as a DuckDB file: publish again with `brecha publish` (or go "
                           "back to the previous copy with `brecha publish --rollback`)",
        "bad_body": "the request body is not readable JSON (UTF-8, moderate nesting, numbers of fewer than 4300 "
                    "digits), e.g. {example}",
        "body_too_large": "the request body is larger than the limit of {limit}: a scenario takes a few hundred "
                          "bytes",
        "lake_unpublished": "nothing is published on the lake yet: run `brecha run` (or `brecha publish`)",
        "lake_unreachable": "the lake's catalog cannot be read (BRECHA_LAKE_READER): is its PostgreSQL running "
                            "(`make lake-up`) and reachable from this server?",
        "lake_no_artifact": "district lookups answer, but /model and what-ifs need the model artifact of run {run} "
                            "({model}), and it is not at {path} in this BRECHA_HOME: artifacts do not go into the lake, "
                            "they stay in $BRECHA_HOME/artifacts of the machine that trained the run. Copy the folder "
                            "artifacts/{run}/ from that machine into this BRECHA_HOME's artifacts/ folder (e.g. with "
                            "rsync) or serve the API from that machine; no restart is needed",
    },
}


def message(key: str, lang: str = DEFAULT_LANG, **fields: object) -> str:
    """The API message ``key`` in ``lang``, filled with ``fields``."""
    return API[lang][key].format(**fields)
