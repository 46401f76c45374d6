"""rosdep can install every dependency package.xml declares, on Kilted and on Jazzy.

Checked offline against the distribution files and rosdep's base/python key files of
ros/rosdistro. A key resolves when a package of that name is released in the distribution, or
the key file maps it for Ubuntu Noble (the platform of both distributions). What has no key is
named in NO_ROSDEP_KEY and documented with its pip command; it must then stay out of
package.xml.

The rosdistro files (1.2 MB) are not in the repository: ``test/data/rosdep_keys.yaml`` records
which of package.xml's keys resolve where, and is checked against them wherever they are
(``STEREOSPIKE_ROSDISTRO``, default ``../shared/reference/rosdistro`` beside the checkout). A
new dependency fails here until the record is regenerated from those files, which only
records keys that resolve:

    python test/test_package_rosdep.py /path/to/rosdistro   # a ros/rosdistro clone
"""

from __future__ import annotations

import ast
import os
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "test" / "data" / "rosdep_keys.yaml"
ROSDISTRO = Path(
    os.environ.get("STEREOSPIKE_ROSDISTRO", ROOT.parent / "shared" / "reference" / "rosdistro")
)
DISTROS = ("kilted", "jazzy")
UBUNTU = "noble"

#: Imported by the package, no rosdep key: pip-installed (docs/ros2-install.md says how).
NO_ROSDEP_KEY = {
    "torch": "pip install torch==2.13.0 (rosdep's python3-torch is Ubuntu's older build)",
    "spikingjelly": "pip install spikingjelly==2.0.0",
    "safetensors": "pip install safetensors",
}
#: Imported only on an optional path, deliberately not declared.
OPTIONAL = {"dvs_msgs", "rviz2", "numba", "tensorboard", "expelliarmus"}

#: Top-level Python module -> the rosdep key that provides it.
MODULE_KEYS = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "h5py": "python3-h5py",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "rosbags": "python3-rosbags-pip",
}


def _package():
    from catkin_pkg.package import parse_package

    return parse_package(str(ROOT / "package.xml"))


def _rosdistro_file(name: str) -> Path:
    """``kilted-distribution.yaml``, ``base.yaml``...: flat, or as laid out in a rosdistro clone."""
    if name.endswith("-distribution.yaml"):
        nested = ROSDISTRO / name.split("-")[0] / "distribution.yaml"
    else:
        nested = ROSDISTRO / "rosdep" / name
    return nested if nested.is_file() else ROSDISTRO / name


@cache
def _released(distro: str) -> set[str]:
    doc = yaml.safe_load(_rosdistro_file(f"{distro}-distribution.yaml").read_text())
    names = set()
    for repo_name, repo in doc["repositories"].items():
        release = repo.get("release")
        if release:
            names.update(release.get("packages", [repo_name]))
    return names


@cache
def _key_rules() -> dict:
    rules: dict = {}
    for name in ("base.yaml", "python.yaml"):
        rules.update(yaml.safe_load(_rosdistro_file(name).read_text()))
    return rules


def _resolves_on_ubuntu(rule: object) -> bool:
    if not isinstance(rule, dict) or "ubuntu" not in rule:
        return False
    ubuntu = rule["ubuntu"]
    if isinstance(ubuntu, dict) and not ({"pip", "apt", "packages"} & set(ubuntu)):
        ubuntu = ubuntu.get(UBUNTU, ubuntu.get("*"))  # per-release entries
    return bool(ubuntu)


def _resolves(key: str, distro: str) -> bool:
    return key in _released(distro) or _resolves_on_ubuntu(_key_rules().get(key))


def _imported_top_level_modules() -> set[str]:
    modules = set()
    for path in [*(ROOT / "stereospike_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def _declared_keys() -> set[str]:
    pkg = _package()
    groups = ("exec_depends", "build_depends", "test_depends", "buildtool_depends")
    return {d.name for group in groups for d in getattr(pkg, group)}


def _record_from(rosdistro: Path) -> dict[str, list[str]]:
    global ROSDISTRO
    ROSDISTRO = rosdistro
    _released.cache_clear()
    _key_rules.cache_clear()
    return {d: sorted(k for k in _declared_keys() if _resolves(k, d)) for d in DISTROS}


def _needs_rosdistro() -> None:
    if not _rosdistro_file("kilted-distribution.yaml").is_file():
        pytest.skip(f"no rosdistro files at {ROSDISTRO} (set STEREOSPIKE_ROSDISTRO)")


@pytest.mark.parametrize("distro", DISTROS)
def test_every_package_xml_key_resolves_in_the_distribution(distro):
    keys = _declared_keys()
    record = yaml.safe_load(RECORD.read_text())
    missing = sorted(keys - set(record[distro]))
    assert not missing, f"rosdep cannot resolve on {distro} (per {RECORD.name}): {missing}"
    assert not keys & set(NO_ROSDEP_KEY) and not keys & OPTIONAL


def test_the_record_matches_the_rosdistro_files():
    _needs_rosdistro()
    record = yaml.safe_load(RECORD.read_text())
    for distro in DISTROS:
        missing = sorted(k for k in _declared_keys() if not _resolves(k, distro))
        assert not missing, f"rosdep cannot resolve on {distro}: {missing}"
        assert set(record[distro]) == {k for k in record[distro] if _resolves(k, distro)}


def test_the_checker_rejects_what_has_no_key():
    _needs_rosdistro()
    assert not _resolves("dvs_msgs", "kilted") and not _resolves("dvs_msgs", "jazzy")
    assert not _resolves("python3-spikingjelly", "kilted")
    assert _resolves("event_camera_msgs", "jazzy") and _resolves("python3-rosbags-pip", "kilted")


def test_every_third_party_import_is_declared_or_on_a_documented_list():
    pkg = _package()
    declared = {d.name for d in pkg.exec_depends}
    stdlib = set(__import__("sys").stdlib_module_names)
    imported = _imported_top_level_modules() - stdlib - {"stereospike_ros"}
    undeclared = []
    for module in sorted(imported):
        key = MODULE_KEYS.get(module, module)
        if key not in declared and module not in NO_ROSDEP_KEY and module not in OPTIONAL:
            undeclared.append(f"{module} (key {key})")
    assert not undeclared, f"imported but not in package.xml: {undeclared}"


def test_no_key_list_is_documented_with_its_install_command():
    text = (ROOT / "docs" / "ros2-install.md").read_text()
    for module in NO_ROSDEP_KEY:
        assert re.search(rf"pip install[^\n]*\b{module}\b", text), module


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python test/test_package_rosdep.py ROSDISTRO_DIR")
    record = _record_from(Path(sys.argv[1]))
    unresolved = sorted(_declared_keys() - set(record["kilted"]) - set(record["jazzy"]))
    RECORD.parent.mkdir(exist_ok=True)
    header = (
        "# package.xml keys that rosdep resolves, per distribution (Ubuntu Noble), from the\n"
        "# ros/rosdistro files. Regenerate: python test/test_package_rosdep.py ROSDISTRO_DIR\n"
    )
    RECORD.write_text(header + yaml.safe_dump(record, sort_keys=False))
    print(f"wrote {RECORD}" + (f"; NOT resolvable: {unresolved}" if unresolved else ""))
