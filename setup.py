"""ament_python build of stereospike_ros; also a plain setuptools package for a venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "stereospike_ros"

# Every executable, so that `ros2 run stereospike_ros <name>` finds it in lib/stereospike_ros.
CONSOLE_SCRIPTS = [
    "stereospike = stereospike_ros.cli:main",
    "benchmark = stereospike_ros.cli:benchmark_main",
    "cache = stereospike_ros.cli:cache_main",
    "inspect = stereospike_ros.cli:inspect_main",
    "depth_node = stereospike_ros.ros.depth_node:main",
    "depth_lifecycle_node = stereospike_ros.ros.depth_lifecycle_node:main",
    "event_player = stereospike_ros.ros.event_player:main",
    "depth_evaluator = stereospike_ros.ros.depth_evaluator:main",
    "demo = stereospike_ros.cli:demo_main",
    "simulate = stereospike_ros.cli:simulate_main",
    "evaluate = stereospike_ros.cli:evaluate_main",
    "export = stereospike_ros.cli:export_main",
    "prune = stereospike_ros.cli:prune_main",
    "report = stereospike_ros.cli:report_main",
    "train = stereospike_ros.cli:train_main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["data/splits/*.json", "weights/*.safetensors", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="stereospike_ros maintainers",
    maintainer_email="maintainers@stereospike-ros.org",
    description="Dense depth from stereo event cameras with a spiking neural network (StereoSpike)",
    license="Apache-2.0",
    # colcon test takes pytest from here (setuptools >= 72 dropped tests_require).
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
