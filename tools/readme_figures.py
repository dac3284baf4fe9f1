"""``python -m tools.readme_figures priority|clusters --readme README.md``: rewrite a README's generated block of
figures (the two priority lenses, or the spatial clusters) from the marts of ``$BRECHA_HOME`` opened read-only, so the
figures it shows are a run's, not typed. A script: it builds its settings from the environment, as every entry point."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from brecha.core.db import session
from brecha.core.settings import Settings
from brecha_ml import clusters, priority


def priority_block(con) -> str:
    return priority.readme_block(priority.readme_frame(con))


BLOCKS = {  # name: (the block from the marts, its start and end markers)
    "priority": (priority_block, priority.README_START, priority.README_END),
    "clusters": (clusters.readme_block, clusters.README_START, clusters.README_END),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", choices=sorted(BLOCKS), help="which block of figures to rewrite")
    parser.add_argument("--readme", type=Path, required=True, help="the markdown file holding the block")
    args = parser.parse_args()
    block_of, start, end = BLOCKS[args.figures]
    with session(Settings.from_env(os.environ).paths.db, read_only=True) as con:
        block = block_of(con)
    text = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(clusters.replace_readme_block(text, block, start, end), encoding="utf-8")
    print(block)


if __name__ == "__main__":
    main()
