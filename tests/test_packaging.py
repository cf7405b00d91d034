"""pyproject.toml's pins: every dependency bounded both ways, with the floors above known advisories."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [
        Requirement(line) for line in [*project["dependencies"], *project["optional-dependencies"]["test"]]
    ]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_dependency_has_a_floor_and_a_ceiling_that_the_installed_release_meets(
    requirement: Requirement,
) -> None:
    assert {">=", "<"} <= {spec.operator for spec in requirement.specifier}
    assert requirement.specifier.contains(version(requirement.name))


@pytest.mark.parametrize(
    ("name", "newest_with_an_advisory"),
    [("aiohttp", "3.14.4")],  # serves the ops endpoint and the Telegram webhook to the outside
)
def test_servers_exclude_releases_with_known_advisories(name: str, newest_with_an_advisory: str) -> None:
    pinned = {requirement.name: requirement.specifier for requirement in requirements()}
    assert name in pinned, f"{name} is not pinned directly"
    assert not pinned[name].contains(newest_with_an_advisory)
