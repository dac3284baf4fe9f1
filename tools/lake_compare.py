"""Are the lake's marts the embedded warehouse's? (``brecha.warehouse.lake_compare``: the comparison lives in the
package, since ``brecha migrate-to-lake`` runs it too.)

    .venv/bin/python -m tools.lake_compare EMBEDDED.duckdb LAKE_ENV_FILE   # from the project folder, e.g.
    .venv/bin/python -m tools.lake_compare warehouse/brecha.duckdb /tmp/h/lake.env

prints one line per mart and exits 1 on any difference (2 when either side cannot be opened). It compares the lake's
latest snapshot, not the published one.
"""

from __future__ import annotations

import sys

from brecha.warehouse.lake_compare import TOLERANCE, VOLATILE, MartDiff, compare, main, open_both

__all__ = ["TOLERANCE", "VOLATILE", "MartDiff", "compare", "main", "open_both"]

if __name__ == "__main__":
    sys.exit(main())
