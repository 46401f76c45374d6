"""What a recording holds, as lines a person reads (``inspect``): size, depth frames, f x B,
and per camera its camera_info, the rectification readers apply, and optionally its events."""

from __future__ import annotations

from collections.abc import Iterator

from stereospike_ros.data.sequence import StereoSequence, focal_baseline_of
from stereospike_ros.events.types import SIDES


def describe_sequence(sequence: StereoSequence, count_events: bool = False) -> Iterator[str]:
    """Lines describing ``sequence``, each as soon as it is known; ``count_events`` streams
    every event to count it (slow)."""
    stamps = sequence.depth_stamps()
    yield f"{sequence!r}"
    yield f"  size        {sequence.width} x {sequence.height} (W x H)"
    if len(stamps):
        span = (stamps[-1] - stamps[0]) / 1e9
        yield f"  depth       {len(stamps)} frames, {stamps[0]} .. {stamps[-1]} ns ({span:.2f} s)"
    else:
        yield "  depth       none"
    fb = focal_baseline_of(sequence)
    yield f"  f x B       {'unknown' if fb is None else f'{fb:.4f} px*m'}"
    for side in SIDES:
        calib = sequence.calibration(side)
        what = f"{calib.distortion_model}, fx {calib.K[0, 0]:.2f}" if calib else "none"
        yield f"  {side:5s} camera_info {what}"
        # What evaluate, cache and the event player apply to this side's events
        yield f"  {side:5s} rectification {sequence.rectifier(side).source}"
        if count_events:
            n, first, last = 0, None, None
            for chunk in sequence.iter_events(side):
                n += len(chunk)
                first = int(chunk["t"][0]) if first is None else first
                last = int(chunk["t"][-1])
            yield f"  {side:5s} events {n} in [{first}, {last}] ns"
