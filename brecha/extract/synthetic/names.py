"""Spanish- and Quechua-looking place names, and the spelling variants other registries use for them.

A name is generated in its proper form (title case, accents: ``San José de Huaylla``); the INEI
reference spells it in upper case without accents (``SAN JOSE DE HUAYLLA``, keeping Ñ), OSIPTEL files
in upper case with accents, and a few registries with a different spelling altogether.
"""

from __future__ import annotations

import unicodedata

import numpy as np

_ROOTS = (
    "Hua", "Cha", "Pa", "Ca", "Lla", "Ma", "Ta", "Qui", "Co", "Pu", "Ya", "Sa", "Ra", "Ti", "Cu", "Pi",
    "Ña", "Huan", "Chu", "An", "Ay", "Mar", "Pam", "Tam", "Col", "Ccol", "Ocu", "Ac", "Chin", "Pocco",
    "Uchu", "Sina", "Luri", "Cata", "Quis", "Huay", "Yana", "Paca", "Sora", "Antá", "Chal", "Ñu",
)
_MIDDLES = ("", "", "", "ll", "r", "n", "c", "hua", "ya", "cu", "ri", "ma", "ta", "ca")
_SUFFIXES = (
    "pampa", "bamba", "marca", "cancha", "huasi", "cucho", "yacu", "pata", "chaca", "rumi", "orco",
    "cocha", "llacta", "mayo", "caya", "huay", "racra", "pucro", "tambo", "huanca", "ccasa", "puquio",
    "bamba", "pampa", "marca",
)
_SAINTS = (
    "San Juan", "San Pedro", "San Miguel", "Santa Rosa", "Santa Ana", "San José", "San Luis",
    "San Francisco", "Santiago", "San Antonio", "Santo Domingo", "San Pablo", "San Marcos", "San Isidro",
    "San Martín", "San Rafael", "San Bartolomé", "Santa María", "Santa Cruz", "San Cristóbal",
    "San Jerónimo", "San Andrés", "Santo Tomás", "San Nicolás", "San Ramón", "Santa Inés", "San Lorenzo",
)
_PLAIN = (
    "La Victoria", "La Unión", "El Porvenir", "Nuevo Progreso", "Independencia", "La Esperanza",
    "Bellavista", "Buenos Aires", "Las Lomas", "Vista Alegre", "El Carmen", "Los Olivos", "Pueblo Nuevo",
    "Tres Unidos", "Alto Inambari", "Nueva Arica", "Huertas", "Los Aquijes", "Monte Verde",
)
_JUNGLE_PREFIX = ("Río", "Puerto", "Alto", "Bajo", "Nuevo")


def quechua(rng: np.random.Generator) -> str:
    """A Quechua-looking single word, e.g. ``Huayllapampa``."""
    root = _ROOTS[rng.integers(len(_ROOTS))]
    mid = _MIDDLES[rng.integers(len(_MIDDLES))]
    suf = _SUFFIXES[rng.integers(len(_SUFFIXES))]
    word = root + mid + suf
    if rng.random() < 0.35:
        word = root + mid + _ROOTS[rng.integers(len(_ROOTS))].lower()
    return word[0].upper() + word[1:].lower()


def place_name(rng: np.random.Generator, region: str = "sierra") -> str:
    """A district or populated-centre name in its proper form."""
    u = rng.random()
    if region == "selva" and u < 0.3:
        return f"{_JUNGLE_PREFIX[rng.integers(len(_JUNGLE_PREFIX))]} {quechua(rng)}"
    if u < 0.55:
        return quechua(rng)
    if u < 0.8:
        return f"{_SAINTS[rng.integers(len(_SAINTS))]} de {quechua(rng)}"
    if u < 0.9:
        return _SAINTS[rng.integers(len(_SAINTS))]
    return _PLAIN[rng.integers(len(_PLAIN))]


def strip_accents(text: str) -> str:
    """Remove accents but keep Ñ/ñ (as the INEI reference does)."""
    out = []
    for ch in text:
        if ch in "Ññ":
            out.append(ch)
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        out.append("".join(c for c in decomposed if unicodedata.category(c) != "Mn"))
    return "".join(out)


def reference_form(name: str) -> str:
    """``San José de Huaylla`` -> ``SAN JOSE DE HUAYLLA`` (the INEI reference's spelling)."""
    return strip_accents(name).upper()


def accented_upper(name: str) -> str:
    """``San José de Huaylla`` -> ``SAN JOSÉ DE HUAYLLA`` (how OSIPTEL registries often spell it)."""
    return name.upper()


def spelling_variant(name: str, rng: np.random.Generator) -> str:
    """Another registry's spelling of an upper-case ``name`` (always different from ``name``)."""
    transforms = (
        lambda s: s.replace("Y", "I", 1),
        lambda s: s.replace("I", "Y", 1),
        lambda s: s.replace("Z", "S", 1),
        lambda s: s.replace("QUI", "KI", 1),
        lambda s: s.replace("HUA", "WA", 1),
        lambda s: s.replace("CC", "C", 1),
        lambda s: s.replace("LL", "L", 1),
        lambda s: s.replace(" ", "_", 1),
        lambda s: s[:19] if len(s) > 19 else s,
        lambda s: s + "S" if not s.endswith("S") else s[:-1],
        lambda s: f"{s} ({s.split()[-1][:4]}{s.split()[-1][-2:]})",
        lambda s: s.replace(" DE ", " ", 1),
    )
    order = rng.permutation(len(transforms))
    for i in order:
        out = transforms[i](name)
        if out != name:
            return out
    return name + " ."
