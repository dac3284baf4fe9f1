"""What a landing batch (or a rebuild) did, per file and per raw table, printable for the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from brecha.core.layouts import LAYOUTS


@dataclass(frozen=True)
class FileResult:
    source_file: str
    entity: str
    sha256: str
    rows_landed: int
    rows_rejected: int
    newly_landed: bool
    note: str = ""


@dataclass
class IngestResult:
    batch_id: int
    input_dir: str
    files: list[FileResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    title: str = "batch"

    def per_entity(self) -> dict[str, tuple[int, int, int]]:
        """``{entity: (files, rows_landed, rows_rejected)}`` for every raw table (zeros when no file landed)."""
        out = {layout.entity: (0, 0, 0) for layout in LAYOUTS}
        for f in self.files:
            n, landed, rejected = out[f.entity]
            out[f.entity] = (n + 1, landed + f.rows_landed, rejected + f.rows_rejected)
        return out

    @property
    def rows_landed(self) -> int:
        return sum(f.rows_landed for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    def brief(self) -> str:
        """The headline and the notes, without the per-file table, for `brecha run`'s progress (its summary has the
        rows per source)."""
        head = (f"{self.title} {self.batch_id}: {len(self.files)} files from {self.input_dir}, {self.rows_landed:,} rows "
                f"landed, {self.rows_rejected:,} rejected ({self.seconds:.1f} s)")
        return "\n".join([head, *str(self).splitlines()[len(self.files) + 3:]])

    def __str__(self) -> str:
        width = max([len(f.source_file) for f in self.files] + [4])
        lines = [f"{self.title} {self.batch_id}: {len(self.files)} files from {self.input_dir} "
                 f"({self.seconds:.1f} s)",
                 f"  {'file':<{width}}  {'raw table':<28} {'landed':>9} {'rejected':>9}"]
        for f in self.files:
            flag = "" if f.newly_landed else "  (same bytes landed before: unchanged)"
            lines.append(f"  {f.source_file:<{width}}  {f.entity:<28} {f.rows_landed:>9,} {f.rows_rejected:>9,}{flag}")
        lines.append(f"  {'total':<{width}}  {'':<28} {self.rows_landed:>9,} {self.rows_rejected:>9,}")
        absent = [e for e, (n, _, _) in self.per_entity().items() if n == 0]
        if absent:
            lines.append("no file in this batch for: " + ", ".join(absent))
        for name, reason in self.skipped:
            lines.append(f"skipped {name}: {reason}")
        lines += [f"note: {n}" for n in self.notes]
        if self.rows_rejected:
            lines.append("rejected rows, with reason, column, value and record: raw._rejects")
        return "\n".join(lines)
