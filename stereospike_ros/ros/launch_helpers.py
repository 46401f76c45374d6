"""What the launch files compute, kept importable without launch/launch_ros so tests run it.

Topic names in this package are relative (``davis/left/events``, ``depth_node/depth``), so a
``namespace:=`` launch argument moves a whole graph. rviz2 configuration files cannot follow a
namespace by themselves, so the launch file writes a copy whose relative topics are resolved
against the namespace the depth node runs in.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

__all__ = ["namespaced_rviz_config", "require_package", "resolve_topic", "rviz_topics"]


def resolve_topic(topic: str, namespace: str) -> str:
    """The absolute name of ``topic`` for a node in ``namespace`` (no remapping, no ``~``)."""
    if topic.startswith("/"):
        return topic
    if topic.startswith("~"):
        raise ValueError(f"topic {topic!r}: private names depend on the node; give it relative")
    namespace = namespace.strip("/")
    return f"/{namespace}/{topic}" if namespace else f"/{topic}"


def _topic_properties(tree: object) -> list[dict]:
    """Every ``Topic: {Value: ...}`` mapping of an rviz config, displays in groups included."""
    found = []
    if isinstance(tree, dict):
        topic = tree.get("Topic")
        if isinstance(topic, dict) and isinstance(topic.get("Value"), str):
            found.append(topic)
        for value in tree.values():
            found.extend(_topic_properties(value))
    elif isinstance(tree, list):
        for value in tree:
            found.extend(_topic_properties(value))
    return found


def rviz_topics(config_text: str) -> list[str]:
    """The topic names an rviz2 configuration subscribes to, as written."""
    return [t["Value"] for t in _topic_properties(yaml.safe_load(config_text))]


def namespaced_rviz_config(
    template: Path | str, namespace: str, out_dir: Path | None = None
) -> Path:
    """A copy of ``template`` with every relative topic resolved in ``namespace``.

    Written to ``out_dir`` (default: the temporary folder); returns its path.
    """
    doc = yaml.safe_load(Path(template).read_text())
    for topic in _topic_properties(doc):
        topic["Value"] = resolve_topic(topic["Value"], namespace)
    folder = Path(out_dir or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    tag = namespace.strip("/").replace("/", "_") or "root"
    with tempfile.NamedTemporaryFile(
        "w", suffix=".rviz", prefix=f"stereospike_{tag}_", dir=folder, delete=False
    ) as out:
        yaml.safe_dump(doc, out, sort_keys=False)
    return Path(out.name)


def require_package(name: str, why: str, install: str) -> None:
    """Fail the launch now, before any node starts, when ROS package ``name`` is not installed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        raise RuntimeError(f"{why} but {name} is not installed ({install})") from None
