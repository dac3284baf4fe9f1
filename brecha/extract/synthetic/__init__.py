"""Synthetic extracts in the published INEI / OSIPTEL layouts (``brecha extract``).

``generate(out, seed, scale)`` writes one file per source into ``out``, in the folder structure and exact
layouts of the real extracts (see ``brecha.core.layouts``), quirks included, plus the two layouts without a real
sample (OSIPTEL fixed connections, INEI ENAHO module 100). The same seed and scale give byte-identical
files; ``scale`` multiplies only the large tables (populated centres per district, fixed connections,
ENAHO households).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brecha.extract.synthetic import coverage, enaho, fixed, mobile_lines, reference
from brecha.extract.synthetic.world import build_world

__all__ = ["ExtractResult", "generate"]


@dataclass
class ExtractResult:
    out: Path
    seed: int
    scale: float
    rows: dict[str, int] = field(default_factory=dict)  # file (relative to out) -> data rows / features / objects
    seconds: float = 0.0

    @property
    def files(self) -> list[Path]:
        return [self.out / rel for rel in self.rows]

    def __str__(self) -> str:
        width = max(len(rel) for rel in self.rows) if self.rows else 0
        lines = [f"synthetic extracts (seed {self.seed}, scale {self.scale:g}) in {self.out}:"]
        for rel, n in self.rows.items():
            size = (self.out / rel).stat().st_size
            lines.append(f"  {rel:<{width}}  {n:>9,} rows  {size / 1e6:8.2f} MB")
        lines.append(f"{len(self.rows)} files in {self.seconds:.1f} s")
        return "\n".join(lines)

    def brief(self) -> str:
        """One line, for `brecha run`'s progress."""
        return (f"synthetic extracts (seed {self.seed}, scale {self.scale:g}) in {self.out}: {len(self.rows)} files, "
                f"{sum(self.rows.values()):,} rows")


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 100 + part]))


def generate(out: Path, seed: int = 42, scale: float = 1.0) -> ExtractResult:
    """Write every synthetic extract into ``out`` (created if needed) and say what was written."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed)
    result = ExtractResult(out=out, seed=seed, scale=scale)
    r = result.rows
    u, c, g, o = reference.UBIGEO_DIR, reference.CENSUS_DIR, reference.GEO_DIR, mobile_lines.OSIPTEL_DIR
    r[f"{u}/ubigeo_distrito.csv"] = reference.write_districts(world, out, _rng(seed, 1))
    r[f"{u}/ubigeo_provincia.csv"] = reference.write_provinces(world, out, _rng(seed, 2))
    r[f"{u}/ubigeo_departamento.csv"] = reference.write_departments(world, out, _rng(seed, 3))
    r[f"{c}/indicadores-distrito.json"] = reference.write_census(world, out, _rng(seed, 4))
    r[f"{g}/peru_distrital_simple.geojson"] = reference.write_district_boundaries(world, out, _rng(seed, 5))
    r[f"{g}/peru_departamental_simple.geojson"] = reference.write_department_boundaries(world, out)
    r[f"{coverage.COVERAGE_DIR}/{coverage.FILE_NAME}"] = coverage.write_coverage(world, out, _rng(seed, 6), scale)
    lines = mobile_lines.department_lines(world, _rng(seed, 7))
    r[f"{o}/IndMovil-C21.xlsx"] = mobile_lines.write_c21_xlsx(lines, out, _rng(seed, 8))
    r[f"{o}/IndMovil-C21.csv"] = mobile_lines.write_c21_csv(lines, out)
    r[f"{o}/IndMovil-C23.csv"] = mobile_lines.write_c23_csv(lines, out)
    r[f"{o}/moviles-lineas_C2.2_junio2014.csv"] = mobile_lines.write_c22_csv(world, lines, out)
    r[f"{o}/8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv"] = mobile_lines.write_booths_csv(
        world, out, _rng(seed, 9))
    r.update(fixed.write_fixed(world, out, _rng(seed, 10), scale))
    r.update(enaho.write_enaho(world, out, _rng(seed, 11), scale))
    result.seconds = time.perf_counter() - start
    return result
