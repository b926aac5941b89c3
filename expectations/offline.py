"""Data Docs that open offline: GX's pages load Bootstrap, jQuery, Font Awesome, bootstrap-table and
Vega from CDNs, and a logo from a URL that carries the data context's id. Without the network the
index is empty (its table is drawn by bootstrap-table), and with it every page tells a third party
that someone opened it. After GX builds the site, `localize` rewrites every such reference to a
copy under the site's `static/vendor/`, drops the remote logo (in the pages and in the CSS's
`url(…)`, dark mode included) and tracking links, and the `integrity`/`crossorigin` attributes a
browser refuses on a `file://` page.

The copies ship with the project, in `expectations/vendor/` (pinned versions with their
licences, fetched from the npm registry and checked against its SHA-512 by
`tools/vendor_docs_assets.py`, a maintainer's step): nothing is fetched when docs are built or
opened, and a missing copy stops `tuomin docs` before GX rebuilds the site.
"""

from __future__ import annotations

import functools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from transforms.errors import Refused

VENDORED = Path(__file__).resolve().parent / "vendor"  # shipped with the project (tools/vendor_docs_assets.py)
VENDOR = "static/vendor"  # under the built site


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity (sha512, base64)

    @property
    def tarball(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = {
    p.name: p
    for p in (
        Package("jquery", "3.7.1", "m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg=="),
        Package("bootstrap", "4.3.1", "rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag=="),
        Package(
            "popper.js", "1.12.9", "s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg=="
        ),
        Package(
            "bootstrap-table",
            "1.19.1",
            "WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
        ),
        Package(
            "bootstrap-datepicker",
            "1.9.0",
            "9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
        ),
        Package(
            "@fortawesome/fontawesome-free",
            "6.6.0",
            "60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
        ),
        Package(
            "@forevolve/bootstrap-dark",
            "1.1.0",
            "A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A==",
        ),
        Package("vega", "5.30.0", "ZGoC8LdfEUV0LlXIuz7hup9jxuQYhSaWek2M7r9dEHAPbPrzSQvKXZ0BbsJbrarM100TGRpTVN/l1AFxCwDkWw=="),
        Package(
            "vega-lite", "5.21.0", "hNxM9nuMqpI1vkUOhEx6ewEf23WWLmJxSFJ4TA86AW43ixJyqcLV+iSCO0NipuVTE0rlDcc2e8joSewWyOlEwA=="
        ),
        Package(
            "vega-embed", "6.26.0", "AZCTdKHDAuhp6TFZRQOOs332tStCwZr/5e4uZMNEuJL69A57cT66NNZJdNiCP6u66REzIToYtMJhMTL9wl5B3A=="
        ),
    )
}

# Each remote reference in GX's templates -> (package, its file in the package). A file whose CSS
# points at others (Font Awesome's webfonts) brings its folder along (FOLDERS).
REFERENCES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery", "dist/jquery.min.js"),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": ("bootstrap", "dist/css/bootstrap.min.css"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": ("bootstrap", "dist/js/bootstrap.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": ("popper.js", "dist/umd/popper.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free",
        "css/all.min.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": ("bootstrap-table", "dist/bootstrap-table.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": ("bootstrap-table", "dist/bootstrap-table.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table",
        "dist/extensions/filter-control/bootstrap-table-filter-control.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker",
        "dist/css/bootstrap-datepicker.min.css",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker",
        "dist/js/bootstrap-datepicker.min.js",
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark",
        "dist/css/bootstrap-prefers-dark.css",
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed", "build/vega-embed.min.js"),
}
FOLDERS = {("@fortawesome/fontawesome-free", "css/all.min.css"): "webfonts"}
REMOTE = re.compile(r"""(src|href)=(["'])(https?://[^"']+)\2""")


class AssetsUnavailable(Refused, RuntimeError):
    """A file the pages need is not shipped in expectations/vendor/: nothing was rebuilt."""


def localize(site: Path) -> int:
    """Rewrite every page of the built site to the local copies; returns how many references were
    rewritten. A remote reference not known here is dropped (an image) or unlinked (a link)."""
    vendor = site / VENDOR
    for package, path in set(REFERENCES.values()):
        _copy(package, path, vendor)
    rewritten = 0
    for page in site.rglob("*.html"):
        up = Path(*[".."] * (len(page.relative_to(site).parts) - 1))  # from the page back to the site's root
        text, count = REMOTE.subn(functools.partial(_local, up=up), page.read_text("utf-8"))
        text = _offline(text)
        if page.parent.parent.parent.parent.name == "validations":  # validations/<suite>/<run>/<time>/<batch>.html
            # GX leaves a dataframe asset's name out of its batch spec; the batch id is "<source>-<asset>".
            text = text.replace("Data asset: None", f"Data asset: {page.stem.split('-', 1)[-1]}")
        page.write_text(text, "utf-8")
        rewritten += count
    for sheet in site.rglob("*.css"):  # GX's own styles: the dark logo from S3
        sheet.write_text(_offline(sheet.read_text("utf-8")), "utf-8")
    return rewritten


REMOTE_URL = re.compile(r"""url\((["']?)https?://[^)"']+\1\)""")  # a CSS url(…) to fetch
LOCKS = re.compile(r"""\s(integrity|crossorigin)=(["'])[^"']*\2""")  # refused on a file:// page: the script never runs


def _offline(text: str) -> str:
    return LOCKS.sub("", REMOTE_URL.sub("url(data:,)", text))


def _local(match: re.Match, up: Path) -> str:
    attribute, quote, url = match.groups()
    if url in REFERENCES:
        package, path = REFERENCES[url]
        return f"{attribute}={quote}{(up / VENDOR / package / path).as_posix()}{quote}"
    # Anything else (the logo with the context id, newsletter and docs links): not fetched.
    return f"{attribute}={quote}#{quote}" if attribute == "href" else f'{attribute}={quote}data:,{quote} alt=""'


def _copy(name: str, path: str, vendor: Path) -> None:
    root = _unpacked(PACKAGES[name])
    target = vendor / name / path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / path, target)
    folder = FOLDERS.get((name, path))
    if folder:
        shutil.copytree(root / folder, vendor / name / folder, dirs_exist_ok=True)


def shipped(package: Package) -> Path:
    """Where a package's copied files ship (expectations/vendor/<name>-<version>/)."""
    return VENDORED / f"{package.name.replace('/', '__')}-{package.version}"


def check_shipped() -> None:
    """AssetsUnavailable, naming the first, if a file the pages need is not shipped."""
    for name, path in sorted(set(REFERENCES.values())):
        if not (shipped(PACKAGES[name]) / path).is_file():
            raise AssetsUnavailable(
                f"{shipped(PACKAGES[name]) / path}: not shipped (run tools/vendor_docs_assets.py); Data Docs not rebuilt"
            )


def _unpacked(package: Package) -> Path:
    """The package's shipped files."""
    return shipped(package)
