"""Procedural scenes of boxes, spheres, cylinders and planes, rendered by analytic ray casting.

Axis-aligned boxes cover an indoor flying scene (a room seen from inside, furniture, thin
panels, a fronto-parallel plane) with one exact, vectorized intersection test. Spheres,
vertical cylinders and planes of any slant (finite discs or infinite: floors, ceilings, far
walls) add curved and slanted surfaces for the randomized scenes. Every test is exact, so depth
is exact and every pixel costs a handful of array operations. Curved and slanted surfaces take
their texture by projection along the world axis they face most (triplanar mapping).

World frame: x right, y down, z forward, the left camera's optical frame at rest (REP 103
optical convention), so a camera with identity rotation looks along +z with y down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stereospike_ros.data.errors import SimulationError
from stereospike_ros.sim.textures import (
    TEXTURE_FAMILIES,
    TILE_METRES,
    TILE_TEXELS,
    Texture,
    TextureAtlas,
    make_texture,
)

#: the hand-made indoor styles, then the procedural ones of the randomized simulator
SCENE_STYLES = (
    "room", "corridor", "boxes", "plane", "planes", "clutter", "outdoor", "shapes", "panel",
)  # fmt: skip

# Ids in the id buffer: room faces 0..5 (2 * axis + side), box k face axis a -> 6 + 3k + a,
# then shape k (spheres, cylinders, planes) -> 6 + 3 * len(boxes) + 3k + a, where a is the
# world axis the surface faces most (it picks the texture projection and the shade).
_ROOM_FACES = 6
_NOTHING = -1
_EPS = 1e-4


@dataclass(frozen=True)
class PinholeCamera:
    """A rectified pinhole camera; ``rays`` are its pixel directions with z = 1 (so t = depth)."""

    width: int
    height: int
    f: float
    cx: float
    cy: float
    rays: np.ndarray = field(init=False, repr=False, compare=False)
    ray_norm: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        xs = (np.arange(self.width, dtype=np.float64) - self.cx) / self.f
        ys = (np.arange(self.height, dtype=np.float64) - self.cy) / self.f
        rays = np.empty((3, self.height, self.width), np.float32)
        rays[0] = xs[None, :]
        rays[1] = ys[:, None]
        rays[2] = 1.0
        object.__setattr__(self, "rays", rays)
        object.__setattr__(self, "ray_norm", np.sqrt((rays * rays).sum(axis=0)))

    @classmethod
    def centred(cls, width: int, height: int, f: float) -> PinholeCamera:
        return cls(width, height, f, (width - 1) / 2.0, (height - 1) / 2.0)


@dataclass(frozen=True)
class Box:
    """A solid axis-aligned box; thin boxes are panels, huge ones stand in for infinite planes."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    texture: Texture
    shade: tuple[float, float, float] = (0.8, 1.0, 0.9)  # per face axis: boxes' faces differ

    def corners(self) -> np.ndarray:
        return _bounds_corners(self.lo, self.hi)

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        return bool(
            np.all(point > np.array(self.lo) - margin)
            and np.all(point < np.array(self.hi) + margin)
        )


def _bounds_corners(lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """The eight corners (8, 3) of the axis-aligned box ``lo``..``hi``."""
    return np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]]
                     for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # fmt: skip


def _commit(
    t: np.ndarray,
    axis: np.ndarray,
    window: tuple[slice, slice],
    best_t: np.ndarray,
    best_id: np.ndarray,
    first_id: int,
) -> None:
    """Write hits ``t`` (NaN = none) nearer than the z-buffer, with face ids by ``axis``."""
    rows, cols = window
    zbuf = best_t[rows, cols]
    with np.errstate(invalid="ignore"):
        hit = (t > _EPS) & (t < zbuf)
    if hit.any():
        np.copyto(zbuf, t.astype(np.float32), where=hit)
        np.copyto(best_id[rows, cols], axis.astype(np.int16) + np.int16(first_id), where=hit)


def _facing_axis(normal: np.ndarray) -> np.ndarray:
    """Per pixel, the world axis (0, 1, 2) that a (3, ...) normal field points along most."""
    return np.abs(normal).argmax(axis=0)


@dataclass(frozen=True)
class Sphere:
    """A solid sphere: boulders, balls, lamps."""

    centre: tuple[float, float, float]
    radius: float
    texture: Texture
    shade: tuple[float, float, float] = (0.9, 1.0, 0.95)

    @property
    def lo(self) -> tuple[float, ...]:
        return tuple(c - self.radius for c in self.centre)

    @property
    def hi(self) -> tuple[float, ...]:
        return tuple(c + self.radius for c in self.centre)

    def corners(self) -> np.ndarray:
        return _bounds_corners(np.array(self.lo), np.array(self.hi))

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        return bool(np.linalg.norm(point - np.array(self.centre)) < self.radius + margin)

    def intersect(self, o, d, window, best_t, best_id, first_id) -> None:  # noqa: ANN001
        """Nearest root of |o + t d - c|^2 = r^2 (in float64: distances up to tens of metres)."""
        rows, cols = window
        dd = d[:, rows, cols].astype(np.float64)
        oc = o.astype(np.float64) - np.array(self.centre)
        a = (dd * dd).sum(axis=0)
        b = np.tensordot(oc, dd, axes=1)  # half of the usual b
        disc = b * b - a * (oc @ oc - self.radius**2)
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / a
        normal = oc[:, None, None] + t * dd
        _commit(t, _facing_axis(normal), window, best_t, best_id, first_id)


@dataclass(frozen=True)
class Cylinder:
    """A solid vertical cylinder (axis along y) with flat caps: columns, posts, drums, trunks."""

    centre_xz: tuple[float, float]
    radius: float
    top: float  # y of the upper cap (y points down, so top < bottom)
    bottom: float
    texture: Texture
    shade: tuple[float, float, float] = (0.85, 1.0, 0.9)

    @property
    def lo(self) -> tuple[float, ...]:
        return (self.centre_xz[0] - self.radius, self.top, self.centre_xz[1] - self.radius)

    @property
    def hi(self) -> tuple[float, ...]:
        return (self.centre_xz[0] + self.radius, self.bottom, self.centre_xz[1] + self.radius)

    def corners(self) -> np.ndarray:
        return _bounds_corners(np.array(self.lo), np.array(self.hi))

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        dx, dz = point[0] - self.centre_xz[0], point[2] - self.centre_xz[1]
        inside_y = self.top - margin < point[1] < self.bottom + margin
        return bool(inside_y and math.hypot(dx, dz) < self.radius + margin)

    def intersect(self, o, d, window, best_t, best_id, first_id) -> None:  # noqa: ANN001
        """The side (a quadratic in x, z) or a cap (a plane in y), whichever is nearer."""
        rows, cols = window
        dd = d[:, rows, cols].astype(np.float64)
        ox, oy, oz = o.astype(np.float64) - np.array([self.centre_xz[0], 0, self.centre_xz[1]])
        a = dd[0] ** 2 + dd[2] ** 2
        b = dd[0] * ox + dd[2] * oz
        disc = b * b - a * (ox * ox + oz * oz - self.radius**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            side = (-b - np.sqrt(disc)) / a
            y = oy + side * dd[1]
            side = np.where((y >= self.top) & (y <= self.bottom), side, np.nan)
            caps = []
            for level in (self.top, self.bottom):
                tc = (level - oy) / dd[1]
                r2 = (ox + tc * dd[0]) ** 2 + (oz + tc * dd[2]) ** 2
                caps.append(np.where((r2 <= self.radius**2) & (tc > 0), tc, np.nan))
            cap = np.fmin(caps[0], caps[1])
            t = np.fmin(side, cap)
        nx, nz = ox + t * dd[0], oz + t * dd[2]
        axis = np.where(np.abs(nx) >= np.abs(nz), 0, 2)
        axis = np.where(t == cap, 1, axis)
        _commit(t, axis, window, best_t, best_id, first_id)


@dataclass(frozen=True)
class Plane:
    """A plane of any slant through ``point`` with unit ``normal``: a disc of ``radius`` metres,
    or infinite (None) for floors, ceilings and far walls."""

    point: tuple[float, float, float]
    normal: tuple[float, float, float]
    texture: Texture
    radius: float | None = None
    shade: tuple[float, float, float] = (0.9, 1.0, 0.95)

    @property
    def lo(self) -> tuple[float, ...]:
        r = 1e3 if self.radius is None else self.radius
        return tuple(c - r for c in self.point)

    @property
    def hi(self) -> tuple[float, ...]:
        r = 1e3 if self.radius is None else self.radius
        return tuple(c + r for c in self.point)

    def corners(self) -> np.ndarray:
        return _bounds_corners(np.array(self.lo), np.array(self.hi))

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        offset = point - np.array(self.point)
        near = abs(float(offset @ np.array(self.normal))) < margin
        within = self.radius is None or np.linalg.norm(offset) < self.radius + margin
        return bool(near and within)

    def intersect(self, o, d, window, best_t, best_id, first_id) -> None:  # noqa: ANN001
        # float32 is exact enough for one division per pixel, and planes often span the
        # whole image (floors, far walls), where float64 would double the cost
        rows, cols = window
        n = np.array(self.normal, np.float32)
        dd = d[:, rows, cols]
        po = (np.array(self.point) - o).astype(np.float32)
        facing = dd[0] * n[0]
        facing += dd[1] * n[1]
        facing += dd[2] * n[2]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.float32(po @ n) / facing
        if self.radius is not None:
            rel = t * dd - po[:, None, None]
            t = np.where((rel * rel).sum(axis=0) <= np.float32(self.radius**2), t, np.nan)
        axis = np.full(t.shape, int(np.abs(n).argmax()))
        _commit(t, axis, window, best_t, best_id, first_id)


Shape = Sphere | Cylinder | Plane


@dataclass(frozen=True)
class Room:
    """An axis-aligned room seen from inside.

    Faces in order -x, +x, -y (ceiling), +y (floor), -z, +z.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    textures: tuple[Texture, Texture, Texture, Texture, Texture, Texture]
    shade: tuple[float, float, float, float, float, float] = (0.8, 0.8, 0.7, 1.0, 0.9, 0.9)


@dataclass
class Scene:
    """A room (or none: empty background) and the boxes in it."""

    room: Room | None
    boxes: list[Box]
    background: float = 0.05  # irradiance where rays hit nothing
    style: str = "custom"
    shapes: list[Shape] = field(default_factory=list)  # spheres, cylinders, planes

    def check_clear(self, points: np.ndarray, margin: float) -> None:
        """Raise if a camera centre in ``points`` (N, 3) leaves the room or enters a box."""
        if self.room is not None:
            inside = np.all(
                (points > np.array(self.room.lo) + margin)
                & (points < np.array(self.room.hi) - margin),
                axis=1,
            )
            if not inside.all():
                raise SimulationError(
                    f"camera path leaves the {self.style!r} room at {points[~inside][0].round(2)}"
                )
        for box in self.boxes:
            if any(box.contains(p, margin) for p in points):
                raise SimulationError(f"camera path enters a box at {box.lo}..{box.hi}")
        for shape in self.shapes:
            if any(shape.contains(p, margin) for p in points):
                raise SimulationError(f"camera path enters a {type(shape).__name__.lower()}")

    def __post_init__(self) -> None:
        # Lookup tables indexed by id + 1 (id -1 = nothing hit): texture, shade, face axis.
        n = TILE_TEXELS
        textures = [Texture(np.full((n, n), self.background, np.float32), TILE_METRES / n)]
        solids = [*self.boxes, *self.shapes]
        tex = [0] + [0] * _ROOM_FACES + [0] * (3 * len(solids))
        shade = [1.0] * len(tex)
        axis = [2] + [f // 2 for f in range(_ROOM_FACES)] + [a for _ in solids for a in range(3)]
        if self.room is not None:
            for f in range(_ROOM_FACES):
                textures.append(self.room.textures[f])
                tex[1 + f], shade[1 + f] = len(textures) - 1, self.room.shade[f]
        for k, solid in enumerate(solids):
            textures.append(solid.texture)
            for a in range(3):
                row = 1 + _ROOM_FACES + 3 * k + a
                tex[row], shade[row] = len(textures) - 1, solid.shade[a]
        self._atlas = TextureAtlas(textures)
        self._tex = np.array(tex, np.int32)
        self._shade = np.array(shade, np.float32)
        self._axis = np.array(axis, np.uint8)

    def render(
        self, camera: PinholeCamera, origin: np.ndarray, rotation: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Irradiance and depth (both (H, W) float32; depth NaN where nothing is hit).

        ``origin`` is the camera centre in the world, ``rotation`` the camera-to-world rotation.
        """
        H, W = camera.height, camera.width
        o = np.asarray(origin, np.float32)
        d = _rotate(np.asarray(rotation, np.float32), camera.rays)
        with np.errstate(divide="ignore"):
            inv = 1.0 / d
        if self.room is not None:
            best_t, best_id = self._intersect_room(o, d, inv)
        else:
            best_t = np.full((H, W), np.inf, np.float32)
            best_id = np.full((H, W), _NOTHING, np.int16)
        world_to_cam = np.asarray(rotation, np.float64).T
        for k, box in enumerate(self.boxes):
            window = _screen_window(box, camera, np.asarray(origin, np.float64), world_to_cam)
            if window is not None:
                _intersect_box(box, o, inv, window, best_t, best_id, _ROOM_FACES + 3 * k)
        first = _ROOM_FACES + 3 * len(self.boxes)
        for k, shape in enumerate(self.shapes):
            window = _screen_window(shape, camera, np.asarray(origin, np.float64), world_to_cam)
            if window is not None:
                shape.intersect(o, d, window, best_t, best_id, first + 3 * k)
        hit = best_id >= 0
        depth = np.where(hit, best_t, np.float32(np.nan))
        t = np.where(hit, best_t, np.float32(0))
        return self._irradiance(camera, o, d, t, best_id + 1), depth

    def _intersect_room(
        self, o: np.ndarray, d: np.ndarray, inv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exit distance from inside the room and the face id, for every pixel."""
        lo = (np.asarray(self.room.lo, np.float32) - o)[:, None, None]
        hi = (np.asarray(self.room.hi, np.float32) - o)[:, None, None]
        # per axis, the distance to the wall ahead (+inf for rays parallel to it)
        ahead = np.maximum(inv * hi, inv * lo)
        t = np.minimum(np.minimum(ahead[0], ahead[1]), ahead[2])
        is_x = ahead[0] == t
        is_y = (ahead[1] == t) & ~is_x
        is_z = ~(is_x | is_y)
        pos = d > 0
        side = (pos[0] & is_x) | (pos[1] & is_y) | (pos[2] & is_z)
        face = 2 * is_y.view(np.uint8) + 4 * is_z.view(np.uint8) + side.view(np.uint8)
        return t, face.astype(np.int16)

    def _irradiance(
        self, camera: PinholeCamera, o: np.ndarray, d: np.ndarray, t: np.ndarray, row: np.ndarray
    ) -> np.ndarray:
        """Texture x shade at each hit; ``row`` = id + 1 indexes the lookup tables."""
        X = o[:, None, None] + t * d
        axis = self._axis.take(row)
        on_x, on_y = axis == 0, axis == 1
        u = X[0].copy()  # surface coordinates: the two world axes along the hit face
        np.copyto(u, X[2], where=on_x)
        v = X[1].copy()
        np.copyto(v, X[2], where=on_y)
        # a pixel covers t / f metres across the ray, stretched by 1 / cos(incidence); the
        # stretch is capped at 3 so grazing floors are not blurred across as well as along
        facing = np.abs(d[2])
        np.copyto(facing, np.abs(d[0]), where=on_x)
        np.copyto(facing, np.abs(d[1]), where=on_y)
        norm = camera.ray_norm
        footprint = t * norm / (np.float32(camera.f) * np.maximum(facing, np.float32(1 / 3) * norm))
        texture = self._atlas.sample(self._tex.take(row), u, v, footprint)
        return texture * self._shade.take(row)


def _rotate(rot: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """rot @ rays for (3, H, W) rays with z = 1, without BLAS (whose threads wake slowly)."""
    out = np.empty_like(rays)
    for k in range(3):
        np.multiply(rays[0], rot[k, 0], out=out[k])
        out[k] += rot[k, 1] * rays[1]
        out[k] += rot[k, 2]
    return out


def _screen_window(
    box: Box, camera: PinholeCamera, origin: np.ndarray, world_to_cam: np.ndarray
) -> tuple[slice, slice] | None:
    """The image rectangle a box can cover (None: invisible); saves testing every pixel."""
    cam = (box.corners() - origin) @ world_to_cam.T
    z = cam[:, 2]
    if np.all(z <= _EPS):
        return None  # entirely behind the camera
    if np.any(z <= 0.05):
        return slice(0, camera.height), slice(0, camera.width)
    x = camera.f * cam[:, 0] / z + camera.cx
    y = camera.f * cam[:, 1] / z + camera.cy
    x0, x1 = max(int(np.floor(x.min())) - 1, 0), min(int(np.ceil(x.max())) + 2, camera.width)
    y0, y1 = max(int(np.floor(y.min())) - 1, 0), min(int(np.ceil(y.max())) + 2, camera.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _intersect_box(
    box: Box,
    o: np.ndarray,
    inv: np.ndarray,
    window: tuple[slice, slice],
    best_t: np.ndarray,
    best_id: np.ndarray,
    first_id: int,
) -> None:
    """Slab test of one box on the pixels of ``window``; updates the z-buffer in place."""
    rows, cols = window
    near = []
    far = None
    with np.errstate(invalid="ignore"):
        for a in range(3):
            ia = inv[a, rows, cols]
            t1 = np.float32(box.lo[a] - o[a]) * ia
            t2 = np.float32(box.hi[a] - o[a]) * ia
            near.append(np.fmin(t1, t2))
            far_a = np.fmax(t1, t2)
            far = far_a if far is None else np.fmin(far, far_a)
    t_near = np.fmax(np.fmax(near[0], near[1]), near[2])
    zbuf = best_t[rows, cols]
    hit = (t_near <= far) & (t_near > _EPS) & (t_near < zbuf)
    if not hit.any():
        return
    is0 = t_near == near[0]
    is1 = (t_near == near[1]) & ~is0
    axis = 2 - 2 * is0.view(np.uint8) - is1.view(np.uint8)
    np.copyto(zbuf, t_near, where=hit)
    np.copyto(best_id[rows, cols], axis.astype(np.int16) + np.int16(first_id), where=hit)


# --- scene styles -----------------------------------------------------------------------------


def _room_textures(
    rng: np.random.Generator, contrast: float, floor: str = "tiles", texture: str = "default"
) -> tuple[Texture, ...]:
    walls = [
        make_texture(
            rng,
            _pattern(rng, texture, ["noise", "stripes", "blobs", "checker"]),
            contrast,
            base=rng.uniform(0.35, 0.7),
        )
        for _ in range(4)
    ]
    ceiling_pattern = "grid" if texture == "default" else _pattern(rng, texture, ())
    ceiling = make_texture(rng, ceiling_pattern, contrast, base=rng.uniform(0.5, 0.8))
    floor_pattern = floor if texture == "default" else _pattern(rng, texture, ())
    floor_tex = make_texture(rng, floor_pattern, contrast, base=rng.uniform(0.25, 0.5))
    # order: -x, +x, -y (ceiling), +y (floor), -z, +z
    return (walls[0], walls[1], ceiling, floor_tex, walls[2], walls[3])


def _random_box(
    rng: np.random.Generator,
    contrast: float,
    x_range: tuple[float, float],
    z_range: tuple[float, float],
    floor_y: float,
    size_range: tuple[float, float],
    kind: str,
    texture: str = "default",
) -> Box:
    pattern = _pattern(rng, texture, ["noise", "checker", "stripes", "blobs"])
    texture = make_texture(rng, pattern, contrast, base=rng.uniform(0.2, 0.8))
    cx = rng.uniform(*x_range)
    cz = rng.uniform(*z_range)
    if kind == "panel":  # a free-standing board facing the camera, thin along z
        w, h, t = rng.uniform(0.6, 1.6), rng.uniform(0.8, 2.0), 0.03
        bottom = floor_y - rng.uniform(0.0, 0.6)
        return Box((cx - w / 2, bottom - h, cz - t / 2), (cx + w / 2, bottom, cz + t / 2), texture)
    sx, sy, sz = rng.uniform(*size_range, size=3)
    bottom = floor_y if rng.random() < 0.7 else floor_y - rng.uniform(0.5, 1.5)  # some float
    return Box((cx - sx / 2, bottom - sy, cz - sz / 2), (cx + sx / 2, bottom, cz + sz / 2), texture)


def _place(
    rng: np.random.Generator,
    make: callable,
    count: int,
    path: np.ndarray,
    clearance: float,
) -> list:
    """``count`` solids from ``make()`` (anything with ``lo``/``hi`` bounds) whose bounds keep
    ``clearance`` metres from the bounds of the path."""
    lo, hi = path.min(axis=0) - clearance, path.max(axis=0) + clearance
    boxes: list = []
    for _ in range(count * 20):
        if len(boxes) == count:
            break
        box = make()
        overlaps = np.all(np.array(box.lo) < hi) and np.all(np.array(box.hi) > lo)
        if not overlaps:
            boxes.append(box)
    return boxes


def build_scene(
    style: str,
    rng: np.random.Generator,
    contrast: float,
    path: np.ndarray,
    plane_depth_m: float = 3.0,
    plane_size_m: float | None = None,
    texture: str = "default",
) -> Scene:
    """A scene of ``style`` around the camera ``path`` ((N, 3) centres), keeping it clear.

    Camera starts at the origin looking along +z, about 1.2 m above the floor. Objects stand
    1-10 m ahead; "plane" is one fronto-parallel textured plane at ``plane_depth_m`` (infinite
    unless ``plane_size_m`` gives its square side), with no room around it. ``texture`` names a
    family of ``TEXTURE_FAMILIES`` for every surface ("default": each style's own patterns).
    The procedural styles (planes, clutter, outdoor, shapes, panel) have no room: floors,
    ceilings and far walls are planes, and open sky has no depth (NaN).
    """
    if texture != "default" and texture not in TEXTURE_FAMILIES:
        raise SimulationError(
            f"unknown texture family {texture!r}; "
            f"choose from default, {', '.join(TEXTURE_FAMILIES)}"
        )
    if style in ("planes", "clutter", "outdoor", "shapes", "panel"):
        scene = _procedural(style, rng, contrast, path, texture)
    elif style == "plane":
        half = 1e3 if plane_size_m is None else plane_size_m / 2
        surface = make_texture(
            rng,
            _pattern(rng, texture, ("noise",)) if texture != "default" else "noise",
            contrast,
            base=0.5,
        )
        box = Box((-half, -half, plane_depth_m), (half, half, plane_depth_m + 0.01), surface)
        scene = Scene(None, [box], style=style)
    elif style == "room":
        room = Room(
            (-4.0, -1.8, -3.0), (4.0, 1.2, 11.0), _room_textures(rng, contrast, texture=texture)
        )
        boxes = _place(
            rng,
            lambda: _random_box(
                rng, contrast, (-3.2, 3.2), (1.5, 9.5), 1.2, (0.3, 1.0), "box", texture
            ),
            5,
            path,
            0.6,
        )
        boxes += _place(
            rng,
            lambda: _random_box(
                rng, contrast, (-3.0, 3.0), (2.0, 9.0), 1.2, (0, 0), "panel", texture
            ),
            3,
            path,
            0.6,
        )
        scene = Scene(room, boxes, style=style)
    elif style == "corridor":
        room = Room(
            (-1.3, -1.6, -3.0), (1.3, 1.2, 30.0), _room_textures(rng, contrast, "checker", texture)
        )
        boxes = []
        for z in np.arange(2.0, 28.0, 3.0) + rng.uniform(0, 1.5):  # doors and posters on the walls
            side = rng.choice([-1.0, 1.0])
            x_face = side * 1.3
            poster = make_texture(
                rng,
                _pattern(rng, texture, ["stripes", "blobs", "checker"]),
                contrast,
                base=rng.uniform(0.2, 0.8),
            )
            w, h = rng.uniform(0.6, 1.2), rng.uniform(0.8, 2.0)
            x0, x1 = sorted((x_face, x_face - side * 0.05))
            top = 1.2 - h - rng.uniform(0.0, 0.4)
            boxes.append(Box((x0, top, z), (x1, top + h, z + w), poster))
        boxes += _place(
            rng,
            lambda: _random_box(
                rng, contrast, (-1.0, 1.0), (3.0, 25.0), 1.2, (0.3, 0.7), "box", texture
            ),
            4,
            path,
            0.6,
        )
        scene = Scene(room, boxes, style=style)
    elif style == "boxes":
        room = Room(
            (-5.0, -2.2, -3.0), (5.0, 1.2, 11.0), _room_textures(rng, contrast, texture=texture)
        )
        boxes = _place(
            rng,
            lambda: _random_box(
                rng, contrast, (-4.2, 4.2), (1.2, 10.0), 1.2, (0.3, 1.2), "box", texture
            ),
            14,
            path,
            0.6,
        )
        boxes += _place(
            rng,
            lambda: _random_box(
                rng, contrast, (-3.5, 3.5), (1.5, 9.0), 1.2, (0, 0), "panel", texture
            ),
            4,
            path,
            0.6,
        )
        scene = Scene(room, boxes, style=style)
    else:
        raise SimulationError(f"unknown scene style {style!r}; choose from {SCENE_STYLES}")
    scene.check_clear(path, margin=0.3)
    return scene


# --- procedural styles of the randomized simulator -----------------------------------------


def _pattern(rng: np.random.Generator, texture: str, default: Sequence[str]) -> str:
    """A pattern from ``default`` (the hand-made styles' own choice) or the texture family."""
    choices = default if texture == "default" else TEXTURE_FAMILIES[texture]
    return str(rng.choice(list(choices)))


def _surface(rng: np.random.Generator, texture: str, contrast: float) -> Texture:
    """A random surface of the family: pattern, contrast (x0.5-1.5) and base level drawn."""
    pattern = _pattern(rng, texture, ("noise", "checker", "stripes", "blobs", "smooth", "fine"))
    return make_texture(rng, pattern, contrast * rng.uniform(0.5, 1.5), base=rng.uniform(0.2, 0.8))


def _depth_ahead(rng: np.random.Generator, near: float, far: float) -> float:
    """Log-uniform depth: as many objects between 1 and 2 m as between 10 and 20 m."""
    return float(np.exp(rng.uniform(np.log(near), np.log(far))))


def _lateral(rng: np.random.Generator, z: float) -> float:
    """x of an object at depth ``z``: within the view of a camera panning +-30 degrees."""
    return float(rng.uniform(-1.0, 1.0) * (0.9 * z + 0.5))


def _slanted_normal(rng: np.random.Generator, max_tilt_deg: float) -> tuple[float, float, float]:
    """A unit normal facing the camera (-z), tilted by up to ``max_tilt_deg`` any way."""
    tilt = np.radians(rng.uniform(0.0, max_tilt_deg))
    azimuth = rng.uniform(0.0, 2 * np.pi)
    n = np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), -np.cos(tilt)])
    return tuple(float(v) for v in n)


def _frame(
    rng: np.random.Generator, texture: str, contrast: float, path: np.ndarray,
    far: float | None, floor: float, ceiling: float,
) -> list[Shape]:  # fmt: skip
    """Floor (probability ``floor``), ceiling, and a far wall ``far`` m beyond the path."""
    shapes: list[Shape] = []
    if rng.random() < floor:
        y = float(path[:, 1].max()) + rng.uniform(0.8, 1.6)
        shapes.append(Plane((0.0, y, 0.0), (0.0, -1.0, 0.0), _surface(rng, texture, contrast)))
    if rng.random() < ceiling:
        y = float(path[:, 1].min()) - rng.uniform(1.0, 3.0)
        shapes.append(Plane((0.0, y, 0.0), (0.0, 1.0, 0.0), _surface(rng, texture, contrast)))
    if far is not None:
        z = float(path[:, 2].max()) + far
        normal = _slanted_normal(rng, 20.0)
        shapes.append(Plane((0.0, 0.0, z), normal, _surface(rng, texture, contrast)))
    return shapes


def _procedural(
    style: str, rng: np.random.Generator, contrast: float, path: np.ndarray, texture: str
) -> Scene:
    """The randomized styles. Depths are measured ahead of the path's far end for objects
    and span 0.5-20 m and beyond; every surface draws its own texture of the family."""
    z0 = float(path[:, 2].max())
    y_mid = float(path[:, 1].mean())

    def surface() -> Texture:
        return _surface(rng, texture, contrast)

    boxes: list[Box] = []
    shapes: list[Shape] = []
    if style == "planes":  # slanted boards at every depth before a far wall

        def board() -> Plane:
            z = z0 + _depth_ahead(rng, 0.6, 20.0)
            centre = (_lateral(rng, z - z0), y_mid + rng.uniform(-0.4, 0.4) * (z - z0), z)
            return Plane(
                centre,
                _slanted_normal(rng, 60.0),
                surface(),
                rng.uniform(0.3, 0.5) * (z - z0) + 0.2,
            )

        shapes = _place(rng, board, int(rng.integers(3, 8)), path, 0.5)
        shapes += _frame(rng, texture, contrast, path, _depth_ahead(rng, 8.0, 40.0), 0.5, 0.3)
    elif style == "clutter":  # many small boxes close by, a wall a few metres away

        def item() -> Box:
            z = z0 + _depth_ahead(rng, 0.5, 6.0)
            x, y = _lateral(rng, z - z0), y_mid + rng.uniform(-1.0, 1.0)
            sx, sy, sz = rng.uniform(0.08, 0.6, 3)
            return Box((x - sx, y - sy, z - sz), (x + sx, y + sy, z + sz), surface())

        boxes = _place(rng, item, int(rng.integers(10, 26)), path, 0.35)
        shapes = _frame(rng, texture, contrast, path, rng.uniform(3.0, 10.0), 0.8, 0.5)
    elif style == "outdoor":  # ground, buildings 5-40 m away, sometimes open sky (no depth)

        def building() -> Box:
            z = z0 + _depth_ahead(rng, 5.0, 40.0)
            x = _lateral(rng, z - z0) * 1.5
            w, h, t = rng.uniform(2.0, 10.0), rng.uniform(3.0, 15.0), rng.uniform(2.0, 10.0)
            ground = float(path[:, 1].max()) + 1.5
            return Box((x - w / 2, ground - h, z), (x + w / 2, ground, z + t), surface())

        boxes = _place(rng, building, int(rng.integers(4, 12)), path, 1.0)
        far = _depth_ahead(rng, 40.0, 80.0) if rng.random() < 0.5 else None
        shapes = _frame(rng, texture, contrast, path, far, 1.0, 0.0)
        # the ground is where the buildings stand, not at _frame's random height
        shapes[0] = Plane((0.0, float(path[:, 1].max()) + 1.5, 0.0), (0.0, -1.0, 0.0), surface())
    elif style == "shapes":  # spheres and cylinders: curved surfaces, never in "planes"/"clutter"

        def thing() -> Shape:
            z = z0 + _depth_ahead(rng, 0.8, 15.0)
            x, y = _lateral(rng, z - z0), y_mid + rng.uniform(-0.8, 0.8)
            if rng.random() < 0.6:
                return Sphere((x, y, z), rng.uniform(0.15, 0.15 + 0.12 * (z - z0)), surface())
            r = rng.uniform(0.1, 0.1 + 0.06 * (z - z0))
            top = y_mid - rng.uniform(0.5, 4.0)
            return Cylinder((x, z), r, top, y_mid + rng.uniform(0.5, 2.0), surface())

        shapes = _place(rng, thing, int(rng.integers(5, 13)), path, 0.4)
        shapes += _frame(rng, texture, contrast, path, _depth_ahead(rng, 6.0, 30.0), 0.7, 0.3)
    elif style == "panel":  # a wall with a panel floating in front of it (the stereo classic)
        wall = z0 + rng.uniform(2.5, 8.0)
        front = z0 + rng.uniform(1.0, 0.6 * (wall - z0))
        # a quarter to two thirds of the view's width (MVSEC's lens sees 1.5 m per metre)
        side = rng.uniform(0.4, 1.0) * (front - z0)
        x, y = rng.uniform(-0.3, 0.3) * side, y_mid + rng.uniform(-0.2, 0.2) * side
        boxes = [
            Box(
                (x - side / 2, y - side / 2, front),
                (x + side / 2, y + side / 2, front + 0.02),
                surface(),
            )
        ]
        shapes = [Plane((0.0, 0.0, wall), (0.0, 0.0, -1.0), surface())]
    else:
        raise SimulationError(f"unknown scene style {style!r}; choose from {SCENE_STYLES}")
    return Scene(None, boxes, style=style, shapes=shapes)
