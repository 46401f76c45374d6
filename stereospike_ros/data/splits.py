"""Train / validation / test splits as lists of (sequence name, depth-frame indices).

MVSEC indoor_flying splits 1, 2, 3 (Tulyakov et al. 2019, used by StereoSpike) come from
``splits/mvsec_indoor_flying.json``: per split, a Python slice ``[start, end)`` of the
``depth_image_rect`` frames of each sequence; split N holds out ``indoor_flyingN``, trains on
the other two of 1-3 (``indoor_flying4``'s range is listed but no split uses it), and divides
the held-out slice into 200 validation frames and the rest for test by index lists.

The authors' index lists count frames after dropping the first 2 frames of the slice
(``MVSEC_INDEX_OFFSET``): list index ``i`` is frame ``start + 2 + i``. Split 1's test list
holds 1060, which lands on ``end`` itself, one past the slice: indices that fall outside the
slice are dropped with a warning and counted in ``Split.dropped`` (split 1: 1 dropped, 200
validation and 860 test frames). Training parts use the whole slices.

Other recordings: a JSON or YAML file (see ``load_split``) or ``auto:TRAIN[:VAL]``, which cuts
every sequence in time into contiguous train, validation and test blocks (contiguous, because
neighbouring 50 ms frames are near duplicates and interleaving them would leak).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stereospike_ros.data.errors import MissingInputError, SplitError

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")
MVSEC_INDEX_OFFSET = 2
MVSEC_SPLITS = ("split1", "split2", "split3")
MVSEC_TRAIN_POOL = ("indoor_flying1", "indoor_flying2", "indoor_flying3")
_AUTO = "auto:"
MVSEC_TABLE = Path(__file__).with_name("splits") / "mvsec_indoor_flying.json"

Counts = Mapping[str, int] | Callable[[str], int]


@dataclass(frozen=True)
class SplitPart:
    """One part of a split: per sequence, increasing absolute depth-frame indices."""

    items: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __len__(self) -> int:
        return sum(len(indices) for _, indices in self.items)

    @property
    def sequences(self) -> list[str]:
        return [name for name, _ in self.items]


@dataclass(frozen=True)
class Split:
    """A named split; ``dropped`` counts listed indices that fell outside their slice."""

    name: str
    train: SplitPart
    val: SplitPart
    test: SplitPart
    dropped: dict[str, int] = field(default_factory=dict)

    def part(self, name: str) -> SplitPart:
        if name not in PARTS:
            raise SplitError(f"unknown split part {name!r}; parts are {', '.join(PARTS)}")
        return getattr(self, name)

    @property
    def sequences(self) -> list[str]:
        """Every sequence any part uses, in first-use order."""
        seen: dict[str, None] = {}
        for part in PARTS:
            seen.update(dict.fromkeys(self.part(part).sequences))
        return list(seen)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            **{p: {s: list(i) for s, i in self.part(p).items} for p in PARTS},
            "dropped": dict(self.dropped),
        }


def known_splits() -> list[str]:
    return [*MVSEC_SPLITS, "auto:TRAIN[:VAL]", "<file.json|file.yaml>"]


def _mvsec_table() -> dict:
    # Found beside this file (setup.py installs it as package data), not through the package:
    # importing stereospike_ros.data from here would close an import cycle with its __init__.
    return json.loads(MVSEC_TABLE.read_text(encoding="utf-8"))


def _count(counts: Counts | None, name: str) -> int | None:
    if counts is None:
        return None
    if callable(counts):
        return int(counts(name))
    if name not in counts:
        raise SplitError(f"no frame count for sequence {name!r} (have: {', '.join(counts)})")
    return int(counts[name])


def _check_range(name: str, start: int, end: int, count: int | None, what: str) -> None:
    if not 0 <= start <= end:
        raise SplitError(f"{what}: range [{start}, {end}) of {name!r} is not a valid slice")
    if count is not None and end > count:
        raise SplitError(
            f"{what}: range [{start}, {end}) of {name!r} runs past its {count} depth frames"
        )


def _listed(
    name: str, start: int, end: int, listed: Iterable[int], offset: int, part: str, what: str
) -> tuple[tuple[int, ...], int]:
    """Absolute frames for relative ``listed`` indices; out-of-slice ones dropped and counted."""
    frames = [start + offset + int(i) for i in listed]
    kept = tuple(sorted(f for f in frames if start <= f < end))
    dropped = len(frames) - len(kept)
    if dropped:
        outside = sorted(int(i) for i in listed if not start <= start + offset + int(i) < end)
        log.warning(
            "%s: %d %s index(es) %s of %r fall outside its slice [%d, %d) (offset %d); dropped",
            what,
            dropped,
            part,
            outside[:10],
            name,
            start,
            end,
            offset,
        )
    return kept, dropped


def mvsec_split(name: str, counts: Counts | None = None) -> Split:
    """MVSEC indoor_flying ``split1``/``split2``/``split3``; ``counts`` validates the ranges."""
    if name not in MVSEC_SPLITS:
        raise SplitError(f"unknown split {name!r}; known: {', '.join(known_splits())}")
    table = _mvsec_table()
    what = f"MVSEC indoor_flying {name}"
    ranges = table["ranges"][name]
    held_out = f"indoor_flying{name[-1]}"
    train = []
    for seq in MVSEC_TRAIN_POOL:
        start, end = ranges[seq]
        _check_range(seq, start, end, _count(counts, seq), what)
        if seq != held_out:
            train.append((seq, tuple(range(start, end))))
    start, end = ranges[held_out]
    val, val_dropped = _listed(
        held_out, start, end, table["validation_indices"][name], MVSEC_INDEX_OFFSET, "val", what
    )
    test, test_dropped = _listed(
        held_out, start, end, table["test_indices"][name], MVSEC_INDEX_OFFSET, "test", what
    )
    if set(val) & set(test):
        raise SplitError(f"{what}: validation and test share frames {sorted(set(val) & set(test))}")
    return Split(
        name,
        SplitPart(tuple(train)),
        SplitPart(((held_out, val),)),
        SplitPart(((held_out, test),)),
        {"val": val_dropped, "test": test_dropped},
    )


def _fraction_blocks(start: int, end: int, fractions: Mapping[str, float], what: str) -> dict:
    unknown = set(fractions) - set(PARTS)
    if unknown:
        raise SplitError(f"{what}: unknown parts {sorted(unknown)} in fractions; use {PARTS}")
    values = [float(fractions.get(p, 0.0)) for p in PARTS]
    if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise SplitError(f"{what}: fractions {dict(fractions)} must be >= 0 and sum to 1")
    n = end - start
    blocks, edge, acc = {}, start, 0.0
    for part, value in zip(PARTS, values, strict=True):
        acc += value
        stop = start + round(acc * n)
        blocks[part] = tuple(range(edge, stop))
        edge = stop
    return blocks


def auto_split(spec: str, counts: Mapping[str, int]) -> Split:
    """``auto:TRAIN[:VAL]``: every sequence cut in time into train, val, test blocks."""
    try:
        values = [float(v) for v in spec[len(_AUTO) :].split(":")]
    except ValueError as err:
        raise SplitError(f"bad split {spec!r}: expected auto:TRAIN[:VAL], e.g. auto:0.8") from err
    if not 1 <= len(values) <= 2 or not 0 < values[0] <= 1:
        raise SplitError(f"bad split {spec!r}: expected auto:TRAIN[:VAL] with 0 < TRAIN <= 1")
    train = values[0]
    val = values[1] if len(values) == 2 else (1 - train) / 2
    if not counts:
        raise SplitError(f"split {spec!r} needs the sequences to cut (none given)")
    fractions = {"train": train, "val": val, "test": max(0.0, 1 - train - val)}
    parts: dict[str, list] = {p: [] for p in PARTS}
    for seq, count in counts.items():
        blocks = _fraction_blocks(0, int(count), fractions, f"split {spec!r}")
        for part in PARTS:
            if blocks[part]:
                parts[part].append((seq, blocks[part]))
    return Split(spec, *(SplitPart(tuple(parts[p])) for p in PARTS))


def _read_definition(path: Path) -> dict:
    if path.is_dir():
        raise SplitError(f"split file {path} is a folder, not a JSON or YAML file")
    if not path.is_file():
        raise MissingInputError(f"split file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:
        raise SplitError(f"split file {path} does not parse: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("sequences"), dict):
        raise SplitError(f"split file {path}: expected a mapping with a 'sequences' mapping")
    return data


def split_from_file(path: str | Path, counts: Counts | None = None) -> Split:
    """A split defined in JSON or YAML::

        name: my_split            # optional, default: the file name
        offset: 0                 # optional, added to listed indices (MVSEC lists use 2)
        sequences:
          seq_a: {range: [10, 500], part: train}       # a whole slice into one part
          seq_b: {fractions: {train: 0.8, val: 0.1, test: 0.1}}  # contiguous blocks
          seq_c: {range: [0, 300], val: [0, 5, 9], test: rest}    # index lists, or "rest"

    ``range`` is a slice ``[start, end)`` of the depth frames (``end`` null or missing: all
    frames, which needs ``counts``). Listed indices are relative to ``start + offset``;
    ``rest`` takes the slice's frames that no list took.
    """
    path = Path(path)
    data = _read_definition(path)
    name = str(data.get("name", path.stem))
    offset = int(data.get("offset", 0))
    what = f"split file {path}"
    parts: dict[str, list] = {p: [] for p in PARTS}
    dropped = dict.fromkeys(PARTS, 0)
    for seq, spec in data["sequences"].items():
        if not isinstance(spec, dict):
            raise SplitError(f"{what}: entry of {seq!r} must be a mapping, got {spec!r}")
        unknown = set(spec) - {"range", "part", "fractions", *PARTS}
        if unknown:
            raise SplitError(f"{what}: {seq!r} has unknown keys {sorted(unknown)}")
        bounds = spec.get("range", [0, None])
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise SplitError(f"{what}: range of {seq!r} must be [start, end], got {bounds!r}")
        count = _count(counts, seq)
        start, end = int(bounds[0] or 0), bounds[1]
        if end is None:
            if count is None:
                raise SplitError(f"{what}: {seq!r} has no range end; pass its frame count")
            end = count
        end = int(end)
        _check_range(seq, start, end, count, what)
        chosen = [k for k in ("part", "fractions") if k in spec] + [p for p in PARTS if p in spec]
        if "part" in spec and len(chosen) == 1:
            if spec["part"] not in PARTS:
                raise SplitError(f"{what}: {seq!r} part {spec['part']!r} is not one of {PARTS}")
            parts[spec["part"]].append((seq, tuple(range(start, end))))
        elif "fractions" in spec and len(chosen) == 1:
            blocks = _fraction_blocks(start, end, spec["fractions"], f"{what} ({seq!r})")
            for part in PARTS:
                if blocks[part]:
                    parts[part].append((seq, blocks[part]))
        elif chosen and not {"part", "fractions"} & set(chosen):
            taken: set[int] = set()
            rest_part = None
            for part in PARTS:
                if part not in spec:
                    continue
                if spec[part] == "rest":
                    if rest_part is not None:
                        raise SplitError(f"{what}: {seq!r} has 'rest' for two parts")
                    rest_part = part
                    continue
                frames, n_dropped = _listed(seq, start, end, spec[part], offset, part, what)
                if taken & set(frames):
                    raise SplitError(f"{what}: {seq!r} lists frames in two parts")
                taken |= set(frames)
                dropped[part] += n_dropped
                parts[part].append((seq, frames))
            if rest_part is not None:
                parts[rest_part].append(
                    (seq, tuple(i for i in range(start, end) if i not in taken))
                )
        else:
            raise SplitError(
                f"{what}: {seq!r} needs exactly one of 'part', 'fractions' or index lists "
                f"for {PARTS}, got {sorted(spec)}"
            )
    return Split(name, *(SplitPart(tuple(parts[p])) for p in PARTS), dropped=dropped)


def load_split(spec: str | Path, counts: Counts | None = None) -> Split:
    """A split by name (``split1``..``split3``), ``auto:TRAIN[:VAL]``, or a JSON/YAML file.

    ``counts`` gives each sequence's number of depth frames (a mapping, or a function of the
    name): needed by ``auto`` and by open-ended ranges, and used to check the others.
    Unknown names raise :class:`SplitError` listing the known ones.
    """
    text = str(spec)
    if text in MVSEC_SPLITS:
        return mvsec_split(text, counts)
    if text.startswith(_AUTO):
        if counts is None or callable(counts):
            raise SplitError(f"split {text!r} needs a mapping of sequence -> frame count")
        return auto_split(text, counts)
    if Path(text).suffix.lower() in (".json", ".yaml", ".yml"):
        return split_from_file(text, counts)
    raise SplitError(f"unknown split {text!r}; known: {', '.join(known_splits())}")
