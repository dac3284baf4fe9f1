"""Errors meant for the person running the pipeline: what was wrong, where, and what to do."""

from __future__ import annotations


class BrechaError(Exception):
    """A problem with the input or the environment that the user can fix. The CLI prints it and exits 1."""


class InputFileError(BrechaError):
    """A whole-file problem: unknown layout, missing required column, unreadable encoding."""

    def __init__(self, file: str, problem: str, fix: str, column: str | None = None) -> None:
        self.file, self.problem, self.fix, self.column = file, problem, fix, column
        where = f"{file}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {problem}. {fix}")


class GateFailed(BrechaError):
    """A quality gate (dbt test, expectation suite) failed: nothing downstream may run."""
