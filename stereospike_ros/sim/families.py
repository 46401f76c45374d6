"""Scene families: randomized simulator configs, and which of them training never sees.

A family is a set of values along three axes: geometry (scene style), texture statistics
(texture family) and motion type. Training draws from the *seen* values of every axis. Each
held-out family replaces the seen values of one axis with values training never draws, and
keeps the other two axes as in training, so its score says how well a network carries over to
that one kind of novelty. Everything else (sensor effects, speeds, contrast) is drawn from the
same distribution for every family: they are nuisances to be robust to, not held out.

``random_config(family, seed)`` is a pure function of its arguments: same family and seed,
same ``SimConfig``, same recording bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stereospike_ros.data.errors import SimulationError
from stereospike_ros.data.sequence import MVSEC_FOCAL_BASELINE
from stereospike_ros.sim.simulator import MVSEC_FOCAL_PX, SimConfig, build_world

#: geometries a drone may fly straight ahead in: built around its path, no walls behind
_OPEN = ("planes", "clutter", "outdoor", "shapes", "panel")
#: motions that leave the start for good (a room would be left): only in open geometries
_TRAVEL = ("flight", "shake")

SEEN_GEOMETRY = ("room", "corridor", "boxes", "planes", "clutter", "outdoor")
SEEN_TEXTURE = ("default", "smooth", "fine", "structured")
SEEN_MOTION = ("hover", "forward", "sweep", "lateral", "flight", "rotate")


@dataclass(frozen=True)
class Family:
    """Values each axis draws from; ``held_out``: training never sees this family's novelty."""

    name: str
    geometry: tuple[str, ...]
    texture: tuple[str, ...]
    motion: tuple[str, ...]
    held_out: bool
    about: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("mixed", SEEN_GEOMETRY, SEEN_TEXTURE, SEEN_MOTION, False,
               "the training distribution: every seen geometry, texture and motion"),
        Family("shapes", ("shapes",), SEEN_TEXTURE, SEEN_MOTION, True,
               "held-out geometry: spheres and cylinders (curved surfaces)"),
        Family("panel", ("panel",), SEEN_TEXTURE, ("lateral", "hover", "sweep"), True,
               "held-out geometry: a bare wall with a panel floating in front of it (rooms "
               "hold boards too: the novelty is this scene alone, textures on two planes)"),
        Family("sparse", SEEN_GEOMETRY, ("sparse",), SEEN_MOTION, True,
               "held-out texture statistics: plain surfaces with a few small marks"),
        Family("shake", SEEN_GEOMETRY, SEEN_TEXTURE, ("shake",), True,
               "held-out motion: a hand-held rig walking, panning and trembling (4-9 Hz)"),
    )
}  # fmt: skip

RIGS = ("mvsec", "random")


def family(name: str) -> Family:
    """The family called ``name``; an unknown name raises SimulationError listing them."""
    if name not in FAMILIES:
        raise SimulationError(f"unknown scene family {name!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[name]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _draw(
    fam: Family, rng: np.random.Generator, width: int, height: int, rig: str
) -> dict[str, object]:
    geometry = str(rng.choice(list(fam.geometry)))
    motions = [m for m in fam.motion if geometry in _OPEN or m not in _TRAVEL]
    if not motions:  # e.g. shake in a room: walk slower instead of leaving the family
        motions = list(fam.motion)
    motion = str(rng.choice(motions))
    texture = str(rng.choice(list(fam.texture)))
    scale = width / 346
    focal, baseline = MVSEC_FOCAL_PX * scale, MVSEC_FOCAL_BASELINE / MVSEC_FOCAL_PX
    if rig == "random":  # other lenses and rigs: f x B differs, so disparity per metre does
        focal *= rng.uniform(0.6, 1.6)
        baseline = rng.uniform(0.04, 0.3)
    pixels = width * height / (346 * 260)
    travel_scale = 1.0 if geometry in _OPEN else 0.5  # keeps a shake or walk inside a room
    return {
        "scene": geometry,
        "motion": motion,
        "texture": texture,
        "motion_scale": rng.uniform(0.5, 1.6) * (travel_scale if motion in _TRAVEL else 1.0),
        "contrast": rng.uniform(0.25, 0.9),
        "threshold": rng.uniform(0.12, 0.4),
        "threshold_sigma": rng.uniform(0.0, 0.05),
        "refractory_s": _log_uniform(rng, 1e-5, 1e-3),
        "noise_rate_hz": rng.uniform(0.0, 0.5),
        "hot_pixel_fraction": 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 5e-4),
        "hot_pixel_rate_hz": _log_uniform(rng, 20.0, 500.0),
        "jitter_s": rng.uniform(0.0, 3e-4),
        "max_rate_eps": 0.0 if rng.random() < 0.7 else rng.uniform(2e6, 2e7) * pixels,
        "focal_px": focal,
        "baseline_m": baseline,
        "max_depth_m": 100.0,  # a lidar's range: open sky and the horizon have no depth
    }


def random_config(
    name: str,
    seed: int,
    *,
    width: int = 346,
    height: int = 260,
    duration_s: float = 2.0,
    rig: str = "mvsec",
    recording: str | None = None,
) -> SimConfig:
    """A randomized recording of family ``name``: seeded, reproducible, and buildable.

    Draws geometry, texture, motion, speed and sensor effects from the family; a draw whose
    camera path would enter an object is redrawn (deterministically, from the same seed).
    ``rig``: "mvsec" (DAVIS346 pair, f x B = 19.94 px*m, focal scaled with ``width``) or
    "random" (focal x0.6-1.6, baseline 4-30 cm).
    """
    fam = family(name)
    if rig not in RIGS:
        raise SimulationError(f"unknown rig {rig!r}; choose from {', '.join(RIGS)}")
    index = list(FAMILIES).index(name)
    last: SimulationError | None = None
    for attempt in range(20):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index, attempt]))
        values = _draw(fam, rng, width, height, rig)
        config = SimConfig(
            name=recording or f"{name}_{seed}",
            seed=int(rng.integers(0, 2**31)),
            duration_s=duration_s,
            width=width,
            height=height,
            **values,  # type: ignore[arg-type]
        )
        try:
            build_world(config)
        except SimulationError as err:
            last = err
            continue
        return config
    raise SimulationError(f"family {name!r} seed {seed}: no buildable scene in 20 draws ({last})")
