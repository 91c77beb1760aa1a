#!/usr/bin/env bash
# Build (or bring up to date) .venv for this checkout, from nothing, on a machine without
# apt ROS 2: the ROS 2 Kilted wheels from PyPI, ONNX Runtime, OpenCV, and the eval, train and
# dev extras (torch pinned to the 2.13.0 CPU wheel), and the ROS 2 launch stack from
# ../shared/ros2 when present. Safe to run again; it only adds what is missing.
# Usage: bash scripts/setup_venv.sh   (PYTHON=python3.11 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

pip install -e ".[runtime,ros-wheels,eval,train,dev]"

# cv2.saliency (the OpenCV baselines of bench/ and evaluation) lives in the contrib build.
# pysodmetrics pulls in opencv-python-headless, and both wheels write cv2/, so reinstall the
# contrib wheel of the same version last; it is a superset of the plain one.
cv_version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('opencv-python-headless'))")
if ! .venv/bin/python -c "import cv2, sys; sys.exit(0 if hasattr(cv2, 'saliency') else 1)" 2>/dev/null; then
  pip install --force-reinstall --no-deps "opencv-contrib-python-headless==${cv_version}"
fi
# The ROS 2 launch stack (launch, launch_ros, launch_pytest, ros2cli, composition_interfaces)
# from ../shared/ros2 when it is next to this checkout: `colcon build`, `ros2 launch` and the
# launch tests (test/launch/) need it; without it those tests skip and say why.
if [ -f ../shared/ros2/install.sh ]; then
  echo "setup: installing the ROS 2 launch stack from ../shared/ros2"
  bash ../shared/ros2/install.sh .venv
fi
.venv/bin/python -c "import rclpy, onnxruntime, cv2, torch; assert hasattr(cv2, 'saliency')" \
  || { echo "setup: the venv is incomplete (see the errors above)" >&2; exit 1; }
echo "setup: .venv ready (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'), onnxruntime $(.venv/bin/python -c 'import onnxruntime; print(onnxruntime.__version__)'))"
