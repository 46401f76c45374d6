"""A split of recordings under a folder, with the options that turn them into frames.

Training caches a split's parts and evaluation streams one part; both start here, from one
``SplitFrames``: the split (name, ``auto:`` spec, file or :class:`Split`), the folder its
recordings are found in, the recordings an ``auto:`` split cuts, the :class:`FrameOptions` and
the calibration. Resolving the split (it needs the recordings' frame counts), finding each
recording under the folder and opening it are done here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from stereospike_ros.data.errors import MissingInputError
from stereospike_ros.data.frames import FrameOptions
from stereospike_ros.data.open import open_sequence
from stereospike_ros.data.sequence import CalibrationSource, PathLike, StereoSequence
from stereospike_ros.data.splits import Split, load_split


def locate_sequence(root: PathLike, name: str) -> Path:
    """Where recording ``name`` lives: ``root/name`` or ``root/<scenario>/name`` (a prefix)."""
    root = Path(root)
    candidates = [root / name, root / re.sub(r"\d+$", "", name) / name]
    for prefix in candidates:
        try:
            open_sequence(prefix).close()
        except MissingInputError:
            continue
        return prefix
    raise MissingInputError(
        f"no recording {name!r} under {root}: looked for {', '.join(map(str, candidates))} "
        "(as X_data.hdf5 + X_gt.hdf5, X_data.bag, X.bag, a ROS 2 bag folder X, X.mcap, X.db3)"
    )


def frame_counts(root: PathLike, names: Iterable[str]) -> dict[str, int]:
    """Number of depth frames of each named recording under ``root``."""
    counts = {}
    for name in names:
        sequence = open_sequence(locate_sequence(root, name))
        try:
            counts[name] = len(sequence.depth_stamps())
        finally:
            sequence.close()
    return counts


@dataclass(frozen=True)
class SplitFrames:
    """The frames of a split of the recordings under ``root``.

    ``spec``: a :class:`Split`, or what :func:`load_split` takes (``split1``, ``auto:0.8``, a
    JSON/YAML file). ``sequences``: the recordings an ``auto:`` split cuts (others name theirs).
    """

    spec: Split | str | Path
    root: Path
    sequences: tuple[str, ...] = ()
    options: FrameOptions = field(default_factory=FrameOptions)
    calibration: CalibrationSource = None

    @cached_property
    def split(self) -> Split:
        """The split, resolved once: ``auto:`` counts the frames of ``sequences``; the others
        count a recording's frames only when they need it (to check or to end a range)."""
        if isinstance(self.spec, Split):
            return self.spec
        spec = str(self.spec)
        if spec.startswith("auto:"):
            return load_split(spec, frame_counts(self.root, self.sequences))
        return load_split(spec, lambda name: frame_counts(self.root, [name])[name])

    def recordings(self, part: str) -> list[tuple[Path, tuple[int, ...]]]:
        """``part``'s recordings as found under ``root``, each with its depth-frame indices."""
        return [(locate_sequence(self.root, n), i) for n, i in self.split.part(part).items]

    def open(
        self, part: str, opener: Callable[[Path], StereoSequence] | None = None
    ) -> list[tuple[StereoSequence, list[int]]]:
        """``part``'s recordings opened (by ``opener``, default :func:`open_sequence` with the
        calibration), with their indices; stream each with ``options.frames``, then close it.
        Opened ones are closed again when a later one fails."""
        opened: list[tuple[StereoSequence, list[int]]] = []
        try:
            for name, indices in self.split.part(part).items:
                path = locate_sequence(self.root, name)
                if opener is None:
                    sequence = open_sequence(path, calibration=self.calibration)
                else:
                    sequence = opener(path)
                opened.append((sequence, list(indices)))
        except BaseException:
            for sequence, _ in opened:
                sequence.close()
            raise
        return opened
