#!/usr/bin/env bash
# Runs the real rosdep, offline, on this package for Kilted and Jazzy (Ubuntu Noble): the
# ros/rosdistro files of ROSDISTRO_DIR stand in for the online index, and
# `rosdep install --simulate` must resolve every key (it prints the apt/pip commands).
# test/test_package_rosdep.py checks the same keys without rosdep; this is the end-to-end check.
#
#   tools/check_rosdep.sh ROSDISTRO_DIR [--with-dvs-msgs]
#
# ROSDISTRO_DIR is a ros/rosdistro clone (rosdep/{base,python}.yaml, <distro>/distribution.yaml)
# or a folder of kilted-distribution.yaml, jazzy-distribution.yaml, base.yaml, python.yaml.
# --with-dvs-msgs adds interfaces/dvs_msgs to the workspace, as docs/ros2-install.md says.
# rosdep itself: pip install rosdep (or apt install python3-rosdep).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REF=$(cd "${1:?usage: tools/check_rosdep.sh ROSDISTRO_DIR [--with-dvs-msgs]}" && pwd)
ROSDEP=${ROSDEP:-$(command -v rosdep || true)}
[ -n "$ROSDEP" ] || { echo "rosdep not found (pip install rosdep)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

KEYS=$REF
[ -f "$REF/rosdep/base.yaml" ] && KEYS=$REF/rosdep
distribution() {  # the distribution file of $1 in either layout
  if [ -f "$REF/$1/distribution.yaml" ]; then echo "$REF/$1/distribution.yaml"
  else echo "$REF/$1-distribution.yaml"; fi
}
for f in "$KEYS/base.yaml" "$KEYS/python.yaml" "$(distribution kilted)" "$(distribution jazzy)"; do
  [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }
done
mkdir -p "$TMP/sources.list.d" "$TMP/ws/src" "$TMP/index"
printf 'yaml file://%s/base.yaml\nyaml file://%s/python.yaml\n' "$KEYS" "$KEYS" \
  > "$TMP/sources.list.d/20-default.list"
{
  echo "%YAML 1.1"; echo "---"; echo "distributions:"
  for distro in jazzy kilted; do
    mkdir -p "$TMP/index/$distro"
    ln -s "$(distribution "$distro")" "$TMP/index/$distro/distribution.yaml"
    printf '  %s:\n    distribution: [%s/distribution.yaml]\n' "$distro" "$distro"
    printf '    distribution_status: active\n    distribution_type: ros2\n    python_version: 3\n'
  done
  echo "type: index"; echo "version: 4"
} > "$TMP/index/index.yaml"
ln -s "$ROOT" "$TMP/ws/src/stereospike_ros"
if [ "${2:-}" = "--with-dvs-msgs" ]; then ln -s "$ROOT/interfaces/dvs_msgs" "$TMP/ws/src/dvs_msgs"; fi

export ROSDEP_SOURCE_PATH=$TMP/sources.list.d ROSDISTRO_INDEX_URL=file://$TMP/index/index.yaml
export ROS_PYTHON_VERSION=3
for distro in kilted jazzy; do
  export ROS_HOME=$TMP/home-$distro ROS_DISTRO=$distro
  "$ROSDEP" update --rosdistro "$distro" >/dev/null
  echo "== $distro"
  "$ROSDEP" install --simulate --from-paths "$TMP/ws/src" --ignore-src -y \
    --os=ubuntu:noble --rosdistro "$distro"
done
echo "rosdep resolves every key on kilted and jazzy"
