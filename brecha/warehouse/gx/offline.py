"""Make the Great Expectations Data Docs readable without internet.

GX 1.x pages link Bootstrap, jQuery, bootstrap-table, Font Awesome, ... from CDNs. ``make_offline(site)`` copies
the same files (``brecha/warehouse/gx/assets``, see its README) to ``<site>/static/vendor`` and rewrites every page's links to
relative paths, so a page opened from disk (``file://``) is styled and its tables are filled.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ASSETS = Path(__file__).with_name("assets")
VENDOR = Path("static") / "vendor"

# the CDN address each vendored file replaces (as written in GX's templates: great_expectations/render/view/templates)
CDN: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
}
_VEGA = re.compile(r'\s*<script src="https://cdn\.jsdelivr\.net/npm/vega(-lite|-embed)?@\d+"></script>')
# the header logo is fetched from GX's web-asset bucket with the context id in its query (a tracking pixel)
_LOGO = re.compile(r'src="https://great-expectations-web-assets\.[^"]*/logo-long\.png[^"]*"')
_SRI = re.compile(r'\s+(integrity="[^"]*"|crossorigin="[^"]*")')  # a file:// load has no CORS: SRI would block it


def make_offline(site: Path) -> int:
    """Vendor the assets into ``site`` and rewrite its pages; return how many pages were rewritten."""
    vendor = site / VENDOR
    shutil.copytree(ASSETS, vendor, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    changed = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "https://" not in text:
            continue
        prefix = Path(os.path.relpath(vendor, page.parent)).as_posix()
        new = text
        for url, local in CDN.items():
            if url in new:
                new = re.sub(rf'(<(?:script|link)[^>]*?(?:src|href)="){re.escape(url)}("[^>]*>)',
                             lambda m, href=f"{prefix}/{local}": _SRI.sub("", f"{m.group(1)}{href}{m.group(2)}"), new)
        static = Path(os.path.relpath(site / "static", page.parent)).as_posix()
        new = _LOGO.sub(f'src="{static}/images/logo-long.png"', new)
        if "vegaEmbed" not in new:
            new = _VEGA.sub("", new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def remote_links(site: Path) -> dict[str, list[str]]:
    """Per page, the stylesheet, script and image addresses that still point outside the site (should be none)."""
    out = {}
    for page in site.rglob("*.html"):
        found = re.findall(r'<(?:script|link|img)[^>]*?(?:src|href)="(https?://[^"]+)"', page.read_text(encoding="utf-8"))
        if found:
            out[str(page.relative_to(site))] = found
    return out
