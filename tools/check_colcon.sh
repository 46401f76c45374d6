#!/usr/bin/env bash
# Builds stereospike_ros the way a ROS 2 workspace does (colcon, ament_python) and checks the
# install tree: package index, launch, config and rviz files, every console script, the bundled
# weights; then `colcon test` on a few quick test files must run tests (not zero) and pass.
# Part of `make test`, so CI exercises the real ament build, not only the venv's checkout.
#
#   tools/check_colcon.sh [VENV]     (default: .venv; colcon from the venv, else from PATH)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${STEREOSPIKE_VENV:-$ROOT/.venv}}
[ -d "$VENV" ] && VENV=$(cd "$VENV" && pwd)  # absolute: the build runs in another folder
WS=$ROOT/build/colcon_check
PKG=stereospike_ros
log() { printf '[colcon] %s\n' "$*" >&2; }
die() { printf '[colcon] error: %s\n' "$*" >&2; exit 1; }

COLCON=$VENV/bin/colcon
[ -x "$COLCON" ] || COLCON=$(command -v colcon) \
  || die "colcon not found (pip install colcon-common-extensions, or apt install python3-colcon-common-extensions)"
export PATH="$VENV/bin:$PATH"
rm -rf "$WS"
mkdir -p "$WS"
start=$(date +%s)

log "colcon build (ament_python) into ${WS#"$ROOT"/}"
(cd "$WS" && "$COLCON" --log-base log build --base-paths "$ROOT" --build-base build \
   --install-base install --packages-select "$PKG" --event-handlers console_direct- \
   >"$WS/build.out" 2>&1) || { tail -30 "$WS/build.out" >&2; die "colcon build failed"; }

# colcon and rosdep stop descending at a package.xml: interfaces/* must not be picked up.
listed=$(cd "$WS" && "$COLCON" --log-base /dev/null list --base-paths "$ROOT" --names-only)
[ "$listed" = "$PKG" ] || die "colcon list found '$listed', expected only $PKG"

INSTALL=$WS/install/$PKG
SHARE=$INSTALL/share/$PKG
for f in package.xml launch/depth.launch.py launch/replay.launch.py config/depth.yaml \
    config/stereospike.rviz; do
  [ -f "$SHARE/$f" ] || die "share/$PKG/$f is not installed"
done
[ -f "$INSTALL/share/ament_index/resource_index/packages/$PKG" ] \
  || die "the ament index marker is not installed"

SITE=$(find "$INSTALL/lib" -maxdepth 3 -type d -name site-packages | head -1)
[ -n "$SITE" ] || die "no site-packages under the install tree"
# Every console script of setup.py, executable, in lib/<package> (where `ros2 run` looks), and
# each one's entry point importable from the install tree (not the checkout).
scripts=$(cd "$ROOT" && "$VENV/bin/python" -c '
import ast
tree = ast.parse(open("setup.py").read())
for n in tree.body:
    if isinstance(n, ast.Assign) and n.targets[0].id == "CONSOLE_SCRIPTS":
        for s in ast.literal_eval(n.value):
            print(s.replace(" ", ""))
')
[ -n "$scripts" ] || die "setup.py lists no console scripts"
count=0
for entry in $scripts; do
  name=${entry%%=*}
  [ -x "$INSTALL/lib/$PKG/$name" ] || die "lib/$PKG/$name is not installed (console script)"
  count=$((count + 1))
done
(cd / && AMENT_PREFIX_PATH="$INSTALL${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" PYTHONPATH="$SITE" \
  "$VENV/bin/python" - "$INSTALL" $scripts <<'EOF'
import importlib
import sys
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

install, scripts = Path(sys.argv[1]), sys.argv[2:]
import stereospike_ros

assert Path(stereospike_ros.__file__).is_relative_to(install), stereospike_ros.__file__
share = Path(get_package_share_directory("stereospike_ros"))
assert share == install / "share" / "stereospike_ros", share
package = Path(stereospike_ros.__file__).parent
assert (package / "weights" / "default.safetensors").is_file(), "bundled weights not installed"
assert list((package / "data" / "splits").glob("*.json")), "split files not installed"
for entry in scripts:
    module, func = entry.split("=")[1].split(":")
    assert callable(getattr(importlib.import_module(module), func)), entry
EOF
) || die "the install tree is incomplete (above)"
log "install tree ok: $count console scripts, launch, config, rviz, ament index, weights"
# What `ros2 run stereospike_ros report --help` runs: the installed script, its usage naming it.
usage=$(cd / && PYTHONPATH="$SITE" "$INSTALL/lib/$PKG/report" --help | head -1)
[[ "$usage" == "usage: report "* ]] || die "lib/$PKG/report --help printed '$usage'"

log "colcon test (a few quick files; the whole suite is the pytest run of make test)"
(cd "$WS" && "$COLCON" --log-base log test --base-paths "$ROOT" --build-base build \
   --install-base install --packages-select "$PKG" --event-handlers console_direct- \
   --pytest-args test/test_package_rosdep.py test/test_ros_launch.py \
   >"$WS/test.out" 2>&1) || { tail -30 "$WS/test.out" >&2; die "colcon test failed"; }
result=$(cd "$WS" && "$COLCON" --log-base /dev/null test-result --test-result-base build --all)
summary=$(printf '%s\n' "$result" | grep '^Summary:' || true)
log "$summary"
[[ "$summary" =~ ^Summary:\ ([0-9]+)\ tests,\ 0\ errors,\ 0\ failures ]] \
  || { printf '%s\n' "$result" >&2; die "colcon test did not pass"; }
[ "${BASH_REMATCH[1]}" -gt 0 ] || die "colcon test ran no tests"
log "ok in $(($(date +%s) - start)) s"
