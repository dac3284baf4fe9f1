"""Matching a file's header against the layouts' headers."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from brecha.core.layouts import Layout

YEAR = re.compile(r"^(19|20)\d\d$")


def norm(text: object) -> str:
    """Header text without accents, case or surrounding blanks: 'MÁS_DE_1_MBPS ' -> 'mas_de_1_mbps'."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).strip().casefold()


def is_year(header: str) -> bool:
    return bool(YEAR.match(header.strip()))


@dataclass(frozen=True)
class HeaderMatch:
    """How well a file's header fits one layout."""

    layout: Layout
    columns: dict[str, str]  # raw column name -> header found in the file
    missing: tuple[str, ...]  # required headers of the layout that the file lacks
    unmatched: tuple[str, ...]  # headers of the file the layout does not know

    @property
    def share_required(self) -> float:
        required = [c for c in self.layout.columns if c.header and c.required]
        return (len(required) - len(self.missing)) / len(required) if required else 0.0

    @property
    def rank(self) -> tuple[float, int, int]:
        return (self.share_required, len(self.columns), -len(self.unmatched))


def match(headers: list[str], layout: Layout) -> HeaderMatch:
    """Compare headers ignoring case, accents and surrounding blanks (a re-saved file may lose them)."""
    by_norm: dict[str, str] = {}
    for h in headers:
        by_norm.setdefault(norm(h), h)
    columns: dict[str, str] = {}
    missing: list[str] = []
    for col in layout.columns:
        if not col.header:
            continue
        found = by_norm.get(norm(col.header))
        if found is not None:
            columns[col.name] = found
        elif col.required:
            missing.append(col.header)
    known = {norm(c.header) for c in layout.columns if c.header}
    unmatched = tuple(h for h in headers if norm(h) not in known)
    return HeaderMatch(layout, columns, tuple(missing), unmatched)


def best_match(headers: list[str], layouts: list[Layout]) -> HeaderMatch | None:
    """The layout the header fits best (None when there are no candidates)."""
    matches = [match(headers, layout) for layout in layouts]
    return max(matches, key=lambda m: m.rank, default=None)
