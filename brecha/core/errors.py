"""Errors meant for the person running the pipeline: what was wrong, where, and what to do."""

from __future__ import annotations

import errno
import sys


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


# What to do about an environment fault, by errno (a file system's answer, not the input's fault).
_ENV_FIXES = {
    errno.EACCES: "the user running brecha lacks permission: fix the folder's permissions (or owner), or set "
                  "BRECHA_HOME to a folder you can write",
    errno.EPERM: "the operation is not permitted here: fix the folder's permissions (or owner), or set BRECHA_HOME "
                 "to a folder you can write",
    errno.EROFS: "the file system is mounted read-only: set BRECHA_HOME to a writable folder, or remount it "
                 "read-write",
    errno.ENOSPC: "the disk is full: free space (or set BRECHA_HOME on a larger disk) and run the command again",
    errno.EDQUOT: "the disk quota is exhausted: free space and run the command again",
    errno.ENOENT: "a folder on the way does not exist: create it, or check BRECHA_HOME and the paths given",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check BRECHA_HOME and the paths given",
    errno.EISDIR: "a folder stands where a file is expected: move it away",
}
_DUCKDB_FIXES = (("permission denied", errno.EACCES), ("read-only file system", errno.EROFS),
                 ("no space left", errno.ENOSPC), ("disk quota", errno.EDQUOT), ("no such file", errno.ENOENT))


def env_fault(err: OSError) -> str:
    """An OS error's reason in words (e.g. 'permission denied')."""
    return (err.strerror or str(err) or type(err).__name__).lower()


def environment_error(err: BaseException) -> BrechaError | None:
    """An environment fault (an ``OSError``, or DuckDB's IO / permission error, which words the same faults) as
    one user-facing error naming the path and what to do; None when ``err`` is something else."""
    if isinstance(err, OSError):
        where = err.filename if err.filename is not None else "?"
        if err.filename2 is not None:
            where = f"{err.filename} -> {err.filename2}"
        fix = _ENV_FIXES.get(err.errno or 0, "check the disk, the folder's permissions and BRECHA_HOME")
        return BrechaError(f"{where}: {env_fault(err)}; {fix}.")
    duckdb = sys.modules.get("duckdb")
    if duckdb is None or not isinstance(err, duckdb.Error):
        return None
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    code = next((c for words, c in _DUCKDB_FIXES if words in text.lower()), None)
    if code is None and not isinstance(err, duckdb.IOException | duckdb.PermissionException):
        return None  # DuckDB's other errors are no environment fault (a commit that failed for a full disk is)
    fix = _ENV_FIXES.get(code or 0, "check the disk, the folder's permissions and BRECHA_HOME")
    return BrechaError(f"{text}; {fix}.")
