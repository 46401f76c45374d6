"""Procedural, tileable surface textures for the simulator, baked once and mip-mapped.

Baking turns any procedural pattern into table lookups at render time, so a render costs a few
vectorized gathers per pixel whatever the pattern. Every pattern is periodic over its tile, so
surfaces of any size wrap without seams. A mip pyramid with trilinear filtering makes each
pixel see the average of the surface patch it covers, as a real pixel does: far surfaces do
not alias into flicker (spurious events), near ones keep their centimetre detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: texels per tile side; 256 texels over a 2.56 m tile = 1 cm texels
TILE_TEXELS = 256
TILE_METRES = 2.56
MIP_LEVELS = 5  # footprints of 1, 2, 4, 8 and 16 texels

PATTERNS = ("noise", "checker", "stripes", "blobs", "tiles", "grid", "smooth", "fine", "dots")

#: texture families of the randomized scenes: name -> the patterns a surface draws from.
#: They differ in statistics (spectrum, sparsity, structure), so a family can be held out.
TEXTURE_FAMILIES: dict[str, tuple[str, ...]] = {
    "smooth": ("smooth",),  # large soft blobs: gradients at 0.3-1 m scales only
    "fine": ("fine", "noise"),  # centimetre grain: strong gradients everywhere
    "structured": ("checker", "stripes", "tiles", "grid", "blobs"),  # edges and repeats
    "sparse": ("dots",),  # a plain surface with a few small marks: most pixels see nothing
}


@dataclass(frozen=True)
class Texture:
    """Reflectance over a periodic tile: ``image[i, j]`` lies at surface (u, v) = (j, i) texels.

    Reflectance is linear (irradiance units are arbitrary; only log ratios make events).
    """

    image: np.ndarray  # (n, n) float32, > 0
    texel_m: float


def _mip_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Level l averages 2^l x 2^l texels (box filter), so it is 2^l times smaller."""
    pyramid = [image.astype(np.float32)]
    for _ in range(levels - 1):
        img = pyramid[-1]
        pyramid.append(
            0.25 * (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2])
        )
    return pyramid


class TextureAtlas:
    """All textures of a scene with their mip pyramids, packed for one gather per sample.

    Record (k, l, i, j) holds the 2 x 2 neighbourhood of texel (i, j) of texture k at level l,
    so a bilinear sample is one 16-byte read instead of four scattered ones.
    """

    def __init__(self, textures: Sequence[Texture], levels: int = MIP_LEVELS) -> None:
        n = textures[0].image.shape[0]
        texel = textures[0].texel_m
        for k, tex in enumerate(textures):
            if tex.image.shape != (n, n) or tex.texel_m != texel:
                raise ValueError(
                    f"texture {k} is {tex.image.shape} at {tex.texel_m} m/texel; "
                    f"the atlas holds ({n}, {n}) at {texel} m/texel"
                )
        if n & (n - 1) or n >> (levels - 1) < 2:
            raise ValueError(f"texture side {n} is not a power of two >= {2 << (levels - 1)}")
        per_texture = sum((n >> level) ** 2 for level in range(levels))
        records = np.empty((len(textures) * per_texture, 4), np.float32)
        offset = 0
        for tex in textures:
            for img in _mip_pyramid(tex.image, levels):
                down = np.roll(img, -1, axis=0)
                block = records[offset : offset + img.size]
                block[:, 0] = img.ravel()
                block[:, 1] = np.roll(img, -1, axis=1).ravel()
                block[:, 2] = down.ravel()
                block[:, 3] = np.roll(down, -1, axis=1).ravel()
                offset += img.size
        self._records = records.view(np.complex128).reshape(-1)
        self.n = n
        self.levels = levels
        self.texel_m = texel
        self._per_texture = per_texture
        # first record of (texture k, level l) at [k * levels + l]
        level_offset = np.cumsum([0] + [(n >> level) ** 2 for level in range(levels - 1)])
        self._base = (
            (np.arange(len(textures))[:, None] * per_texture + level_offset[None, :])
            .astype(np.int32)
            .ravel()
        )

    def __len__(self) -> int:
        return self._records.size // self._per_texture

    def _bilinear(
        self, base: np.ndarray, side: np.ndarray, fu: np.ndarray, fv: np.ndarray
    ) -> np.ndarray:
        """Bilinear sample at texel coordinates (fu, fv) of the levels starting at ``base``."""
        iu = np.floor(fu)
        iv = np.floor(fv)
        au = fu - iu
        av = fv - iv
        # & (side - 1) is the wrap (side is a power of two), right for negative coordinates too
        wrap = side - 1
        record = (iv.astype(np.int32) & wrap) * side
        record += base
        record += iu.astype(np.int32) & wrap
        q = self._records.take(record).view(np.float32).reshape(*record.shape, 4)
        top = q[..., 0] + au * (q[..., 1] - q[..., 0])
        bottom = q[..., 2] + au * (q[..., 3] - q[..., 2])
        return top + av * (bottom - top)

    def sample(
        self, index: np.ndarray, u: np.ndarray, v: np.ndarray, footprint: np.ndarray
    ) -> np.ndarray:
        """Trilinear lookup of texture ``index`` at (u, v) metres (finite float32 arrays).

        ``footprint`` is the size of a pixel on the surface in metres: it picks the two mip
        levels to blend, so the value changes smoothly as a surface approaches.
        """
        scale = np.float32(1.0 / self.texel_m)
        lod = np.log2(np.maximum(footprint * scale, np.float32(1.0)))
        np.minimum(lod, np.float32(self.levels - 1), out=lod)
        lower = np.minimum(lod.astype(np.int32), self.levels - 2)
        blend = lod - lower.astype(np.float32)
        base = self._base.take(index * self.levels + lower)
        side = np.right_shift(self.n, lower)
        fu = np.ldexp(u * scale, -lower)
        fv = np.ldexp(v * scale, -lower)
        fine = self._bilinear(base, side, fu, fv)
        base += side * side
        side >>= 1
        fu *= np.float32(0.5)
        fv *= np.float32(0.5)
        coarse = self._bilinear(base, side, fu, fv)
        return fine + blend * (coarse - fine)


def _blur(img: np.ndarray, passes: int = 1) -> np.ndarray:
    """Periodic 3x3 binomial blur: softens hard pattern edges to about one texel."""
    for _ in range(passes):
        img = 0.5 * img + 0.25 * (np.roll(img, 1, 0) + np.roll(img, -1, 0))
        img = 0.5 * img + 0.25 * (np.roll(img, 1, 1) + np.roll(img, -1, 1))
    return img


def _value_noise(rng: np.random.Generator, n: int, octaves: tuple[int, ...]) -> np.ndarray:
    """Multi-octave periodic value noise: smooth random lattices of 2, 4, 8 ... cells per tile."""
    coords = (np.arange(n) + 0.5) / n
    out = np.zeros((n, n))
    weight_sum = 0.0
    for cells in octaves:
        lattice = rng.random((cells, cells))
        f = coords * cells
        i0 = np.floor(f).astype(int)
        a = f - i0
        a = a * a * (3 - 2 * a)  # smoothstep: no visible lattice creases
        i0 %= cells
        i1 = (i0 + 1) % cells
        rows0, rows1 = lattice[i0], lattice[i1]  # (n, cells) along v
        top = rows0[:, i0] * (1 - a) + rows0[:, i1] * a
        bottom = rows1[:, i0] * (1 - a) + rows1[:, i1] * a
        layer = top * (1 - a[:, None]) + bottom * a[:, None]
        w = cells**-0.5  # fine octaves add most of the gradient: detail at every distance
        out += w * layer
        weight_sum += w
    return out / weight_sum


def _checker(rng: np.random.Generator, n: int) -> np.ndarray:
    k = int(rng.choice([4, 8, 16]))  # squares per tile side: 64, 32 or 16 cm
    i = np.arange(n) * k // n
    return _blur(((i[:, None] + i[None, :]) % 2).astype(float), 2)


def _stripes(rng: np.random.Generator, n: int) -> np.ndarray:
    kx, ky = [(6, 0), (0, 6), (5, 5), (10, 0), (0, 10), (8, -4)][int(rng.integers(6))]
    i = np.arange(n) / n
    phase = 2 * np.pi * (kx * i[None, :] + ky * i[:, None])
    return _blur((np.sin(phase) > 0).astype(float), 2)


def _blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    i = np.arange(n) / n
    out = np.zeros((n, n))
    for _ in range(40):
        cx, cy = rng.random(2)
        r = rng.uniform(0.02, 0.08)  # 5-20 cm on a 2.56 m tile
        dx = np.abs(i[None, :] - cx)
        dy = np.abs(i[:, None] - cy)
        dx = np.minimum(dx, 1 - dx)
        dy = np.minimum(dy, 1 - dy)
        out += rng.choice([-1.0, 1.0]) * np.exp(-(dx * dx + dy * dy) / (2 * r * r))
    return out


def _tiles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Floor-like tiles: per-tile random brightness with dark grout lines."""
    k = int(rng.choice([4, 8]))
    shades = rng.random((k, k))
    i = np.arange(n) * k // n
    img = shades[i[:, None], i[None, :]]
    edge = (np.arange(n) % (n // k)) < 2
    img = np.where(edge[:, None] | edge[None, :], 0.0, img)
    return _blur(img, 1)


def _grid(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ceiling-like panel grid: bright panels, dark frames."""
    k = int(rng.choice([2, 4]))
    width = int(rng.integers(3, 7))
    edge = (np.arange(n) % (n // k)) < width
    return _blur(np.where(edge[:, None] | edge[None, :], 0.0, 1.0), 1)


def _dots(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sparse marks on a plain surface: 15-60 small discs and short strokes per tile."""
    i = np.arange(n)
    out = np.zeros((n, n))
    for _ in range(int(rng.integers(15, 61))):
        cx, cy = rng.integers(0, n, 2)
        r = rng.uniform(1.5, 5.0)  # 1.5-5 cm
        dx = np.minimum(np.abs(i - cx), n - np.abs(i - cx))
        dy = np.minimum(np.abs(i - cy), n - np.abs(i - cy))
        stretch = rng.uniform(1.0, 4.0)  # some marks are strokes
        dist2 = (dx[None, :] / stretch) ** 2 + dy[:, None] ** 2
        out += rng.choice([-1.0, 1.0]) * (dist2 < r * r)
    return _blur(out, 1)


def _normalise(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def make_texture(
    rng: np.random.Generator,
    pattern: str,
    contrast: float,
    base: float = 0.5,
    noise_mix: float = 0.2,
    n: int = TILE_TEXELS,
    tile_m: float = TILE_METRES,
) -> Texture:
    """A baked texture whose log reflectance spans ``log(base) +- contrast``.

    ``contrast`` is half the range of log reflectance (1.0: brightest / darkest = e^2); 0 gives
    a uniform surface, which makes no events. Structured patterns get ``noise_mix`` of value
    noise so that they never repeat exactly along a line (which would confuse stereo matching).
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown texture pattern {pattern!r}; choose from {PATTERNS}")
    noise = _value_noise(rng, n, (2, 4, 8, 16, 32, 64, 128))
    if pattern == "noise":
        img = noise
    elif pattern == "smooth":
        img = _value_noise(rng, n, (2, 4, 8))
    elif pattern == "fine":
        img = _value_noise(rng, n, (32, 64, 128))
    elif pattern == "dots":
        # the plain part stays exactly plain (percentiles would stretch it): marks at +-contrast
        log_reflectance = np.log(base) + contrast * np.clip(_dots(rng, n), -1.0, 1.0)
        return Texture(np.exp(log_reflectance).astype(np.float32), tile_m / n)
    else:
        structured = {
            "checker": _checker,
            "stripes": _stripes,
            "blobs": _blobs,
            "tiles": _tiles,
            "grid": _grid,
        }[pattern](rng, n)
        img = (1 - noise_mix) * _normalise(structured) + noise_mix * _normalise(noise)
    log_reflectance = np.log(base) + contrast * (2.0 * _normalise(img) - 1.0)
    return Texture(np.exp(log_reflectance).astype(np.float32), tile_m / n)
