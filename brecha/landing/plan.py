"""How one recognised file is to be read: the result of recognition, stored in the archive manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from brecha.core.layouts import BY_ENTITY, Layout
from brecha.landing import convert
from brecha.landing.scan import SourceFile


@dataclass(frozen=True)
class FilePlan:
    """A file, the layout it was recognised as, and what the reader needs to know to read it."""

    source: SourceFile
    entity: str
    reader: str  # how brecha.landing.readers reads it: csv, xlsx, json_array, geojson, wide_csv, stacked_xlsx
    columns: dict[str, str] = field(default_factory=dict)  # raw column name -> header found in the file
    headers: tuple[str, ...] = ()  # every header of the file, in order (csv / xlsx)
    sheet: str = ""  # xlsx sheet
    value_columns: tuple[str, ...] = ()  # wide tables: headers spread over columns (years, operators)
    note: str = ""  # how the layout was told apart, when the header alone could not
    cell_range: str = ""  # xlsx: the cells from the header row down, when title rows sit above it ('A4:H1048576')

    @property
    def layout(self) -> Layout:
        return BY_ENTITY[self.entity]

    def to_manifest(self) -> dict[str, Any]:
        src = asdict(self.source)
        src.pop("path")
        src.pop("origin")
        return {**src, "entity": self.entity, "reader": self.reader, "columns": self.columns,
                "headers": list(self.headers), "sheet": self.sheet, "value_columns": list(self.value_columns),
                "note": self.note, "cell_range": self.cell_range}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any], path: Path, cache: Path | None = None) -> FilePlan:
        """``path``: the archived original; a zip, Stata or SPSS file is converted again into ``cache``."""
        source = SourceFile(path=path, rel=entry["rel"], sha256=entry["sha256"], size=entry["size"],
                            fmt=entry["fmt"], encoding=entry["encoding"])
        if entry.get("container"):
            kind = entry["container"].split(":")[0]
            done = convert.to_csv(entry["rel"], path, entry["sha256"], kind, cache or path.parent)
            source = replace(source, path=done.path, container=done.container, member=done.member, origin=path)
        return cls(source=source, entity=entry["entity"], reader=entry["reader"], columns=dict(entry["columns"]),
                   headers=tuple(entry["headers"]), sheet=entry["sheet"],
                   value_columns=tuple(entry["value_columns"]), note=entry["note"],
                   cell_range=entry.get("cell_range", ""))
