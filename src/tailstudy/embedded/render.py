"""Vectorised rendering of concept facets into small RGB images.

An image is a background drawn from the *context* facet, with one object whose *shape*, *size*,
*colour* and *pattern* are the concept's facets, plus per-image nuisance scaled by ``diversity``:
position, scale, rotation, colour jitter, clutter and (web style) occlusion and a colour cast.
``curated`` style centres the object on a clean background; ``web`` places it off-centre among
clutter. All images of a chunk are drawn at once with numpy.
"""

from __future__ import annotations

import numpy as np

COLOURS = np.array(
    [
        (220, 30, 30),  # red
        (245, 140, 20),  # orange
        (240, 220, 40),  # yellow
        (40, 170, 60),  # green
        (40, 80, 220),  # blue
        (140, 50, 180),  # purple
        (245, 130, 190),  # pink
        (130, 80, 40),  # brown
        (25, 25, 25),  # black
        (245, 245, 245),  # white
    ],
    dtype=np.float32,
)
CONTEXT_BASE = np.array(
    [
        (70, 140, 50),  # grass
        (40, 90, 180),  # water
        (215, 190, 135),  # sand
        (235, 238, 245),  # snow
        (150, 195, 240),  # sky
        (150, 125, 100),  # indoor
    ],
    dtype=np.float32,
)
SIZE_RADIUS = np.array([0.2, 0.29, 0.38], dtype=np.float32)  # fraction of the image side
CHUNK = 2048


def _shape_mask(shape: np.ndarray, pu, pv) -> np.ndarray:
    """Inside-mask of each image's shape in normalised object coordinates (radius 1)."""
    rho = np.sqrt(pu**2 + pv**2)
    phi = np.arctan2(pv, pu)
    au, av = np.abs(pu), np.abs(pv)
    masks = [
        rho < 1.0,  # round
        np.maximum(au, av) < 0.82,  # square
        (pv < 0.62) & (pv > -0.95 + 1.75 * au),  # triangular
        rho < 0.55 + 0.4 * np.cos(5 * phi),  # star-shaped
        (rho < 1.0) & (rho > 0.55),  # ring-shaped
        ((au < 0.3) & (av < 0.95)) | ((av < 0.3) & (au < 0.95)),  # cross-shaped
        au + av < 1.05,  # diamond-shaped
        (pu / 1.05) ** 2 + (pv / 0.55) ** 2 < 1.0,  # oval
    ]
    out = np.zeros(pu.shape, dtype=bool)
    for s, m in enumerate(masks):
        out = np.where(shape == s, m, out)
    return out


def _pattern_mask(pattern: np.ndarray, u, v, rng: np.random.Generator) -> np.ndarray:
    """Where the secondary colour shows, in object pixel coordinates."""
    masks = [
        np.zeros(u.shape, dtype=bool),  # plain
        np.mod(u, 6.0) < 3.0,  # striped
        (np.mod(u, 6.0) - 3) ** 2 + (np.mod(v, 6.0) - 3) ** 2 < 3.2,  # spotted
        np.mod(np.floor(u / 4) + np.floor(v / 4), 2) == 0,  # checkered
        np.mod(v, 9.0) < 4.5,  # banded
        rng.random(u.shape, dtype=np.float32) < 0.3,  # speckled
    ]
    out = np.zeros(u.shape, dtype=bool)
    for p, m in enumerate(masks):
        out = np.where(pattern == p, m, out)
    return out


def _background(context: np.ndarray, yy, xx, rng: np.random.Generator, n: int, size: int):
    bg = CONTEXT_BASE[context][:, None, None, :].repeat(size, 1).repeat(size, 2).copy()
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    tex = np.zeros((n, size, size), dtype=np.float32)
    ctx = context[:, None, None]
    tex = np.where(ctx == 0, 18 * np.sin(xx * 1.9 + phase) * np.sin(yy * 0.35), tex)
    tex = np.where(ctx == 1, 22 * np.sin(yy * 0.9 + phase), tex)
    tex = np.where(ctx == 4, 2.2 * (yy - size / 2), tex)
    tex = np.where(ctx == 5, 22 * (np.mod(np.floor((xx + phase * 3) / 6), 2) - 0.5), tex)
    bg += tex[..., None]
    bg += rng.normal(0, 7, bg.shape).astype(np.float32)
    return bg


def render_chunk(
    facets: np.ndarray, size: int, style: str, diversity: float, rng: np.random.Generator
) -> np.ndarray:
    n = len(facets)
    colour, shape, pattern, context, size_f = (facets[:, i] for i in range(5))
    yy, xx = np.meshgrid(
        np.arange(size, dtype=np.float32) + 0.5,
        np.arange(size, dtype=np.float32) + 0.5,
        indexing="ij",
    )
    yy, xx = yy[None], xx[None]
    web = style == "web"
    d = diversity
    r = SIZE_RADIUS[size_f] * size * np.clip(1 + 0.1 * d * rng.standard_normal(n), 0.75, 1.25)
    if web:
        span = np.maximum(size / 2 - r, 1.0) * 0.8
        cx = size / 2 + rng.uniform(-1, 1, n) * span * min(1.0, d)
        cy = size / 2 + rng.uniform(-1, 1, n) * span * min(1.0, d)
        theta = rng.uniform(-np.pi, np.pi, n) * min(1.0, d)
    else:
        cx = size / 2 + rng.normal(0, 1.0 * d, n)
        cy = size / 2 + rng.normal(0, 1.0 * d, n)
        theta = rng.uniform(-np.pi / 6, np.pi / 6, n) * d
    r, cx, cy, theta = (a.astype(np.float32)[:, None, None] for a in (r, cx, cy, theta))
    dx, dy = xx - cx, yy - cy
    cos, sin = np.cos(theta), np.sin(theta)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    inside = _shape_mask(shape[:, None, None], u / r, v / r)
    second = _pattern_mask(pattern[:, None, None], u, v, rng)

    main = COLOURS[colour] * (1 + 0.08 * d * rng.standard_normal((n, 1)).astype(np.float32))
    main = main + rng.normal(0, 12 * d, (n, 3)).astype(np.float32)
    dark = np.where(COLOURS[colour].sum(1, keepdims=True) < 150, 150.0, main * 0.3)
    img = _background(context, yy, xx, rng, n, size)

    # clutter: small blobs of random colours
    n_blobs = rng.poisson(2.5 * d if web else 0.3 * d, n)
    for k in range(int(n_blobs.max(initial=0))):
        has = (n_blobs > k)[:, None, None]
        bx = rng.uniform(0, size, (n, 1, 1)).astype(np.float32)
        by = rng.uniform(0, size, (n, 1, 1)).astype(np.float32)
        br = rng.uniform(1.5, 3.5, (n, 1, 1)).astype(np.float32)
        blob = has & ((xx - bx) ** 2 + (yy - by) ** 2 < br**2)
        bc = rng.uniform(0, 255, (n, 3)).astype(np.float32)
        img = np.where(blob[..., None], bc[:, None, None, :], img)

    obj = np.where(second[..., None], dark[:, None, None, :], main[:, None, None, :])
    img = np.where(inside[..., None], obj, img)

    if web:
        occl = rng.random(n) < 0.25 * min(1.0, d)
        ox = rng.uniform(0, size, (n, 1, 1)).astype(np.float32)
        oy = rng.uniform(0, size, (n, 1, 1)).astype(np.float32)
        ow = rng.uniform(3, size / 3, (n, 1, 1)).astype(np.float32)
        box = occl[:, None, None] & (np.abs(xx - ox) < ow / 2) & (np.abs(yy - oy) < ow / 2)
        grey = rng.uniform(60, 200, (n, 1)).astype(np.float32).repeat(3, 1)
        img = np.where(box[..., None], grey[:, None, None, :], img)
        img += rng.normal(0, 18 * d, (n, 1, 1, 3)).astype(np.float32)  # colour cast
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_images(facets, size: int, style: str, diversity: float, seed) -> np.ndarray:
    """Render ``(N, 5)`` facet value indices → ``(N, size, size, 3)`` uint8, deterministically."""
    facets = np.asarray(facets, dtype=np.int64).reshape(-1, 5)
    out = np.empty((len(facets), size, size, 3), dtype=np.uint8)
    for c, start in enumerate(range(0, len(facets), CHUNK)):
        rng = np.random.default_rng([*np.atleast_1d(seed), c])
        out[start : start + CHUNK] = render_chunk(
            facets[start : start + CHUNK], size, style, diversity, rng
        )
    return out
