"""Data Docs' assets ship with the project (expectations/vendor/, refreshed by
tools/vendor_docs_assets.py): building the docs fetches nothing, and the pages as built name no
remote file (dark mode's logo included) and carry no `integrity`/`crossorigin` attribute, which a
browser enforces on a `file://` page by refusing the script. At 874540f the assets came from the
npm registry at run time, and a machine without it got a traceback after the site had been
rebuilt with its CDN links. (The pages in a browser, network off: tests/closing/test_closing.py.)"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from expectations import offline
from expectations.suite import build_docs
from flows.runtime import paths

REMOTE = re.compile(r"""(?:src|href)=["']?(?:https?:)?//|url\(["']?https?://""")


def test_every_file_the_pages_need_ships_with_its_licence():
    offline.check_shipped()
    for name in {package for package, _ in offline.REFERENCES.values()}:
        shipped = offline.shipped(offline.PACKAGES[name])
        licence = json.loads((shipped / "package.json").read_text("utf-8"))["license"]  # popper.js 1.12.9 has no LICENSE file
        assert licence and (licence == "MIT" or any(p.name.upper().startswith("LICENSE") for p in shipped.iterdir())), name


def test_docs_are_built_from_the_shipped_copies_and_name_no_remote_file(published, tmp_path, monkeypatch):
    project = tmp_path / "gx"
    shutil.copytree(published.restricted / paths.GX_PROJECT, project)
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("Data Docs fetched something"))
    site = build_docs(project).removeprefix("file://").rsplit("/", 1)[0]
    pages = [*tmp_path.glob("gx/**/local_site/**/*.html"), *tmp_path.glob("gx/**/local_site/**/*.css")]
    assert len(pages) > 3 and site
    for page in pages:
        text = page.read_text("utf-8")
        assert not REMOTE.search(text), (page, REMOTE.search(text))
        assert "integrity=" not in text and "crossorigin=" not in text, page
    assert list(tmp_path.glob("gx/**/local_site/static/vendor/jquery/dist/jquery.min.js"))


def test_a_missing_shipped_file_stops_the_build_before_the_site_is_touched(published, tmp_path, monkeypatch):
    project = tmp_path / "gx"
    shutil.copytree(published.restricted / paths.GX_PROJECT, project)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    monkeypatch.setattr(offline, "VENDORED", tmp_path / "nothing")
    with pytest.raises(offline.AssetsUnavailable, match="not shipped"):
        build_docs(project)
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before
