"""Training frames: per ground-truth depth frame, the stereo spike histograms that precede it.

MVSEC protocol (the StereoSpike authors'): for the depth frame stamped ``t``, each camera's
events with ``t - window <= t_event < t`` (window 50 ms) are rectified and counted per pixel and
polarity into (2, H, W) uint16 (channel 0 ON, 1 OFF) - the same window as
``events.StereoWindower`` with the depth stamps as triggers. The sequence is read once, in
chunks, per camera; only windows that overlap the chunk in hand are kept in memory.

Ground-truth hole filling (off by default): ``fill_holes_px=N`` fills every 4-connected NaN
region of fewer than N pixels with the depth of its nearest valid pixel (``fill_small_holes``);
larger regions stay NaN (unknown). ``protocol="paper"`` instead cuts frames exactly as the
authors' code does (area closing of the ground truth, fixed binning grid, truncated
coordinates): see ``stereospike_ros.data.protocol``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from stereospike_ros.data.errors import FormatError
from stereospike_ros.data.protocol import DataProtocol, area_closing, get_protocol
from stereospike_ros.data.sequence import DEFAULT_CHUNK, SIDES, Side, StereoSequence
from stereospike_ros.events.histogram import accumulate_into

DEFAULT_WINDOW_NS = 50_000_000


@dataclass(frozen=True)
class FrameOptions:
    """How depth frames of a recording become training frames: everything but the recording.

    The one set of data options that caching, training and evaluation pass around, so a
    cache, a training run and an evaluation of the same options see the same frames.
    """

    window_ns: int = DEFAULT_WINDOW_NS
    fill_holes_px: int = 0
    rectify: bool = True
    protocol: str = "default"  # stereospike_ros.data.protocol: default or paper

    @classmethod
    def from_window_ms(cls, window_ms: float, **options: Any) -> FrameOptions:
        """Options with a window given in milliseconds (as the command lines take it)."""
        return cls(window_ns=round(window_ms * 1e6), **options)

    def frames(
        self,
        sequence: StereoSequence,
        indices: Iterable[int] | None = None,
        stats: FrameStats | None = None,
    ) -> Iterator[Frame]:
        """:func:`iter_frames` of ``sequence`` with these options."""
        return iter_frames(
            sequence,
            indices,
            window_ns=self.window_ns,
            fill_holes_px=self.fill_holes_px,
            rectify=self.rectify,
            stats=stats,
            protocol=self.protocol,
        )

    def rectification(self, sequence: StereoSequence, off: str) -> dict[str, str]:
        """Per side, where the events' rectification comes from (``off`` when not rectified)."""
        rounding = get_protocol(self.protocol).rounding
        return {s: sequence.rectifier(s, rounding).source if self.rectify else off for s in SIDES}


@dataclass
class Frame:
    """One training sample: stereo histograms of the window before ``t_ns`` and the depth."""

    t_ns: int
    index: int
    left: np.ndarray  # (2, H, W) uint16, [ON, OFF]
    right: np.ndarray  # (2, H, W) uint16
    depth: np.ndarray  # (H, W) float32 metres, NaN = unknown


@dataclass
class FrameStats:
    """What happened to the events on the way to the histograms, per camera."""

    events_in: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_rectify: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_bounds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    #: events older than the end of a window already emitted (time going backwards in the file)
    late: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    holes_filled_px: int = 0


def fill_small_holes(depth: np.ndarray, max_area_px: int) -> tuple[np.ndarray, int]:
    """Fill 4-connected NaN regions smaller than ``max_area_px`` from the nearest valid pixel.

    Returns the filled copy and the number of pixels filled. Regions touching the border are
    holes too (as for area closing); a frame with no valid pixel is returned unchanged.
    """
    nan = np.isnan(depth)
    if max_area_px <= 1 or not nan.any() or nan.all():
        return depth, 0
    labels, _ = ndimage.label(nan)
    sizes = np.bincount(labels.ravel())
    small = sizes < max_area_px
    small[0] = False
    fill = small[labels]
    if not fill.any():
        return depth, 0
    nearest = ndimage.distance_transform_edt(nan, return_distances=False, return_indices=True)
    out = depth.copy()
    out[fill] = depth[nearest[0][fill], nearest[1][fill]]
    return out, int(fill.sum())


def _side_windows(
    sequence: StereoSequence,
    side: Side,
    ends: np.ndarray,
    window_ns: int,
    rectify: bool,
    chunk_size: int,
    stats: FrameStats,
    protocol: DataProtocol,
    offsets: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """The (2, H, W) histogram of ``[end - window_ns, end)`` for each of the increasing ``ends``
    (with the paper protocol: of its grid window, see :func:`_grid_windows`)."""
    h, w = sequence.height, sequence.width
    rectifier = sequence.rectifier(side, protocol.rounding) if rectify else None
    starts = ends - window_ns
    if protocol.binning == "grid" and len(ends):
        grid = _grid_windows(sequence, side, ends, offsets, window_ns, rectifier, chunk_size)
        starts, ends = grid
    hists: dict[int, np.ndarray] = {}
    done = 0  # windows before this one have been yielded
    if not len(ends):
        return
    chunks = sequence.iter_events(side, chunk_size, int(starts.min()), int(ends.max()))
    for chunk in chunks:
        stats.events_in[side] += len(chunk)
        if rectifier is not None:
            before = len(chunk)
            chunk = rectifier(chunk)
            stats.dropped_rectify[side] += before - len(chunk)
        if not len(chunk):
            continue
        t = np.ascontiguousarray(chunk["t"])  # searchsorted on a strided field would copy it
        if (t[1:] < t[:-1]).any():
            chunk = chunk[np.argsort(t, kind="stable")]
            t = np.ascontiguousarray(chunk["t"])
        if done:  # older than a window already yielded: out of time order in the file
            stats.late[side] += int(np.searchsorted(t, ends[done - 1], side="left"))
        t_first, t_last = int(t[0]), int(t[-1])
        i = done
        while i < len(ends) and starts[i] <= t_last:
            if ends[i] > t_first:
                lo, hi = np.searchsorted(t, [starts[i], ends[i]], side="left")
                if hi > lo:
                    hist = hists.get(i)
                    if hist is None:
                        hist = hists[i] = np.zeros((2, h, w), dtype=np.uint16)
                    stats.dropped_bounds[side] += accumulate_into(hist, chunk[lo:hi])
            i += 1
        # Sorted within the stream: nothing later can fall before t_last.
        while done < len(ends) and ends[done] <= t_last:
            yield hists.pop(done) if done in hists else np.zeros((2, h, w), np.uint16)
            done += 1
    while done < len(ends):
        yield hists.pop(done) if done in hists else np.zeros((2, h, w), np.uint16)
        done += 1


def _grid_windows(
    sequence: StereoSequence,
    side: Side,
    stamps: np.ndarray,
    offsets: np.ndarray | None,
    window_ns: int,
    rectifier: object,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The authors' windows for frames at ``stamps`` (ns, increasing): a grid anchored at the
    camera's first event (that survives rectification) after ``stamps[0] - window``; frame k
    (``offsets``: frame index minus the first one's; default 0, 1, 2, ...) covers the open
    interval ``(t0 + k w, t0 + (k + 1) w)`` (ns: ``[t0 + k w + 1, ...)``), cut at the last
    stamp. Frames are counted by index, not by stamp, as the authors count them."""
    anchor = int(stamps[0]) - window_ns
    t0 = None
    for chunk in sequence.iter_events(side, chunk_size, anchor + 1, int(stamps[-1])):
        if rectifier is not None:
            chunk = rectifier(chunk)
        if len(chunk):
            t0 = int(chunk["t"].min())
            break
    k = np.arange(len(stamps), dtype=np.int64) if offsets is None else offsets.astype(np.int64)
    if t0 is None:  # no event: empty windows
        return np.full_like(stamps, anchor), np.full_like(stamps, anchor)
    starts = t0 + k * window_ns + 1
    ends = np.minimum(t0 + (k + 1) * window_ns, int(stamps[-1]))
    return starts, np.maximum(ends, starts)


def iter_frames(
    sequence: StereoSequence,
    indices: Iterable[int] | None = None,
    *,
    window_ns: int = DEFAULT_WINDOW_NS,
    fill_holes_px: int = 0,
    rectify: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    stats: FrameStats | None = None,
    protocol: DataProtocol | str | None = None,
) -> Iterator[Frame]:
    """Frames for the depth frames ``indices`` (default all), streaming the sequence once.

    ``rectify=False`` keeps raw sensor coordinates (only right for pre-rectified recordings
    such as the simulator's). ``stats`` (a :class:`FrameStats`) is filled as frames go out.
    ``protocol``: ``default`` or ``paper`` (a :class:`DataProtocol` or its name).
    """
    protocol = get_protocol(protocol)
    if window_ns <= 0:
        raise ValueError(f"window_ns must be positive, got {window_ns}")
    stats = stats if stats is not None else FrameStats()
    stamps = sequence.depth_stamps()
    chosen = np.arange(len(stamps)) if indices is None else np.asarray(list(indices), np.int64)
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(stamps)):
        raise IndexError(
            f"{sequence.name}: frame indices outside [0, {len(stamps)}): "
            f"{chosen[(chosen < 0) | (chosen >= len(stamps))][:5].tolist()}"
        )
    if (np.diff(chosen) <= 0).any():
        raise ValueError(f"{sequence.name}: frame indices must be strictly increasing")
    ends = stamps[chosen]
    if (np.diff(ends) < 0).any():
        where = getattr(sequence, "what", sequence.name)
        raise FormatError(f"{where}: depth stamps are not in time order")
    offsets = chosen - chosen[0] if len(chosen) else None
    left, right = (
        _side_windows(sequence, s, ends, window_ns, rectify, chunk_size, stats, protocol, offsets)
        for s in SIDES
    )
    depths = sequence.depth_frames(chosen.tolist())
    for hist_l, hist_r, frame in zip(left, right, depths, strict=True):
        depth = frame.depth
        if protocol.gt_closing_px:
            depth = area_closing(depth, protocol.gt_closing_px)
        if fill_holes_px:
            depth, filled = fill_small_holes(depth, fill_holes_px)
            stats.holes_filled_px += filled
        yield Frame(frame.t_ns, frame.index, hist_l, hist_r, depth)
