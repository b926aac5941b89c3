"""Refresh the Data Docs' assets shipped in `expectations/vendor/` (a maintainer's step, run when
GX's templates or a pinned version change; never at run time).

Each pinned package of `expectations/offline.py` is fetched from the npm registry, checked against
the registry's SHA-512, and only the files the pages use are copied, with the package's licence:

    .venv/bin/python tools/vendor_docs_assets.py

`tuomin docs` then reads them from the checkout, with no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from expectations.offline import FOLDERS, PACKAGES, REFERENCES, VENDORED, Package, shipped  # noqa: E402


def fetch(package: Package) -> tarfile.TarFile:
    with urllib.request.urlopen(package.tarball, timeout=60) as response:  # noqa: S310  (a pinned https URL)
        data = response.read()
    if base64.b64encode(hashlib.sha512(data).digest()).decode() != package.integrity:
        raise SystemExit(f"{package.tarball}: its SHA-512 is not the pinned one; nothing copied")
    return tarfile.open(fileobj=io.BytesIO(data))


def main() -> None:
    shutil.rmtree(VENDORED, ignore_errors=True)
    wanted: dict[str, set[str]] = {}
    for name, path in REFERENCES.values():
        wanted.setdefault(name, set()).add(path)
    for name, paths in sorted(wanted.items()):
        package = PACKAGES[name]
        folders = {folder for (n, p), folder in FOLDERS.items() if n == name and p in paths}
        with fetch(package) as archive:
            for member in archive.getmembers():
                relative = member.name.removeprefix("package/")
                licence = relative.upper().startswith("LICENSE") or relative == "package.json"  # its "license" field
                keep = relative in paths or relative.split("/")[0] in folders or licence
                if member.isfile() and keep:
                    target = shipped(package) / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
        print(f"{name} {package.version}: {len(paths)} file(s) and {len(folders)} folder(s) -> {shipped(package)}")


if __name__ == "__main__":
    main()
