"""Are the lake's marts the embedded warehouse's? (``brecha.warehouse.lake_compare``: the comparison lives in the
package, since ``brecha migrate-to-lake`` runs it too.)

    python -m tools.lake_compare EMBEDDED.duckdb LAKE_ENV_FILE   # e.g. warehouse/brecha.duckdb /tmp/h/lake.env

prints one line per mart and exits 1 on any difference.
"""

from __future__ import annotations

import sys

from brecha.warehouse.lake_compare import TOLERANCE, VOLATILE, MartDiff, compare, main, open_both

__all__ = ["TOLERANCE", "VOLATILE", "MartDiff", "compare", "main", "open_both"]

if __name__ == "__main__":
    sys.exit(main())
