"""The image and the wheel carry everything the services need at run time."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gateway.h5.assets import assets
from gateway.infra.lua import lua_dir
from gateway.infra.migrations import migrations_dir

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_copies_every_packaged_directory():
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    wheel = build["targets"]["wheel"]
    needed = [*wheel["packages"], *wheel["force-include"]]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for directory in needed:
        assert f"COPY {directory} ./{directory}" in dockerfile, directory


def test_runtime_files_are_found():
    assert (lua_dir() / "claim.lua").is_file()
    assert sorted(p.name for p in migrations_dir().glob("*.sql"))[:2] == [
        "0001_campaigns.sql",
        "0002_coupons.sql",
    ]


def test_the_h5_page_is_package_data():
    """Inside ``gateway/`` (the wheel's package, the image's COPY), read as resources."""
    assert {"page.html", "page.js", "flashclaim.js"} <= set(assets())


def test_the_api_docs_page_is_package_data():
    """``/docs`` reads it from inside ``gateway/``, which the wheel and the image carry."""
    from gateway.infra.openapi import DOCS_PAGE

    assert DOCS_PAGE.is_file()
    assert DOCS_PAGE.is_relative_to(ROOT / "gateway")
