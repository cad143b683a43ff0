"""The simulated slide: a stained tissue section as layers of optical density (OD).

A section of thickness T is modelled as `layers` slabs of equal thickness, bottom (condenser
side) first; slab k is centred at height h_k = ((k + 1/2) / L - 1/2) * T above the section's
mid-plane. Each slab carries its own stain amounts, so nuclei sit at different depths and a
through-focus series shows them sharpen one after another. The renderer turns each slab's OD
into an absorption image (Beer-Lambert) and blurs it by that slab's own defocus.

`ProceduralSpecimen` generates H&E or hematoxylin-DAB (IHC, nuclear marker) tissue from
position alone, so the slide is effectively unbounded and deterministic (revisiting a
position gives the identical specimen, whatever path led there):

* slide scale: an irregular tissue piece inside `bounds_um` (or tissue everywhere), holes;
* ~250 um: cellular (epithelial) regions versus fibrous stroma;
* glands: lumens (empty) lined by a ring of nuclei;
* nuclei: ellipsoids placed per 50 um chunk by a seeded Poisson process thinned by the local
  cellularity (chunks are generated independently from (seed, chunk index); objects
  overlapping a chunk border are found by visiting every chunk within the largest object
  size of the field). Each nucleus is rasterised into every slab it intersects with the
  fraction of the slab's thickness it fills, so a nucleus cut by the section is paler and a
  thin spindle nucleus shows up in one slab only. Depths are stratified within a chunk so
  that a field's nuclei cover the section's depth evenly;
* textures (chromatin, cytoplasm grain, cell membranes, collagen fibres) are value noise
  evaluated in um, in 3-D: slabs closer than a structure's size share it (membranes and
  fibre bundles run through the section, chromatin granules do not).

Stain amounts are whole-section OD scales: a nucleus spanning the full thickness has the OD
of its amount times the stain vector (see `stains`).
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from slidescan.hardware.sim.config import SpecimenConfig
from slidescan.hardware.sim.noise import (
    derive_seed,
    fbm,
    fbm_3d,
    fbm_points,
    smoothstep,
    value_noise,
    value_noise_3d,
    value_noise_points,
)
from slidescan.hardware.sim.stains import STAIN_PAIRS, od_from_stains

NUCLEUS_CHUNK_UM = 50.0
LUMEN_CHUNK_UM = 250.0
_MAX_NUCLEUS_UM = 6.5  # largest nucleus semi-axis
_MAX_LUMEN_UM = 35.0  # largest lumen semi-axis
_LINING_OFFSET_UM = 4.0  # lining nuclei centre distance outside the lumen wall
_EDGE_UM = 0.3  # width of object edges (anti-aliasing), well below the optical resolution


def _stratified(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform [0, 1) draws spread one per stratum (in random order): the depths of a chunk's
    nuclei cover the section evenly, so a field's content is not by chance all near one face
    (which would move its contrast away from its mid-plane by a large fraction of a um)."""
    n = len(u)
    return (rng.permutation(n) + u) / max(n, 1)


class Specimen(abc.ABC):
    """A slide: per-slab RGB optical density at any world position (um)."""

    def __init__(self, layers: int, thickness_um: float, bounds_um: tuple[float, ...]):
        self.n_layers = int(layers)
        self.thickness_um = float(thickness_um)
        self.bounds_um = tuple(float(b) for b in bounds_um)
        k = np.arange(self.n_layers)
        #: Height of each slab centre above the section mid-plane (um), bottom slab first.
        self.layer_heights_um = ((k + 0.5) / self.n_layers - 0.5) * self.thickness_um

    @abc.abstractmethod
    def od_layers(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """OD per slab and RGB channel on the grid ys x xs -> (L, 3, H, W) float32, >= 0."""

    @abc.abstractmethod
    def tissue_mask(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Where there is tissue on the grid ys x xs -> (H, W) float32 in [0, 1]."""

    def overview_od(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Expected RGB OD at low resolution (macro/overview images) -> (3, H, W) float32."""
        return np.sum(self.od_layers(xs_um, ys_um), axis=0)


@dataclass
class _Objects:
    """Ellipsoids in world um: centre, lateral semi-axes a >= b, angle, depth centre, vertical
    semi-axis and the amounts of the two stains."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    angle: np.ndarray
    zc: np.ndarray
    rz: np.ndarray
    amount1: np.ndarray
    amount2: np.ndarray

    @classmethod
    def concat(cls, parts: list[_Objects]) -> _Objects:
        names = cls.__dataclass_fields__
        if not parts:
            return cls(**{n: np.zeros(0) for n in names})
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})

    def select(self, keep: np.ndarray) -> _Objects:
        return _Objects(**{n: getattr(self, n)[keep] for n in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.cx)


@dataclass(frozen=True)
class _Where:
    """Evaluation points: a grid (xs along x, ys along y) or scattered points."""

    xs: np.ndarray
    ys: np.ndarray
    grid: bool

    @property
    def X(self) -> np.ndarray:
        return self.xs[None, :] if self.grid else self.xs

    @property
    def Y(self) -> np.ndarray:
        return self.ys[:, None] if self.grid else self.ys

    def noise(self, scale: float | tuple[float, float], seed: int) -> np.ndarray:
        if self.grid:
            return value_noise(self.xs, self.ys, scale, seed)
        return value_noise_points(self.xs, self.ys, scale, seed)

    def fbm(self, scale: float, seed: int, octaves: int) -> np.ndarray:
        if self.grid:
            return fbm(self.xs, self.ys, scale, seed, octaves)
        return fbm_points(self.xs, self.ys, scale, seed, octaves)


class ProceduralSpecimen(Specimen):
    """Seeded procedural H&E or IHC tissue; see the module docstring."""

    def __init__(self, config: SpecimenConfig, seed: int) -> None:
        super().__init__(config.layers, config.thickness_um, config.bounds_um)
        self.config = config
        self.seed = int(seed)
        self.stain_vectors = STAIN_PAIRS[config.stain]
        self._s = {
            name: derive_seed(seed, "specimen", name)
            for name in (
                "shape",
                "holes",
                "cell",
                "fibre_dir",
                "nuclei",
                "lumens",
                "chromatin",
                "cyto",
                "cells",
                "fibre_h",
                "fibre_v",
            )
        }
        x0, y0, x1, y1 = self.bounds_um
        self._centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        self._half = ((x1 - x0) / 2, (y1 - y0) / 2)
        # per-instance chunk caches (a class-level cache would keep old specimens alive)
        self._nucleus_candidates = functools.lru_cache(maxsize=4096)(
            self._nucleus_candidates_uncached
        )
        self._lumen_chunk = functools.lru_cache(maxsize=1024)(self._lumen_chunk_uncached)
        self._hole_threshold = (
            float(ndtri(1.0 - config.hole_fraction)) if config.hole_fraction else np.inf
        )

    # -- large-scale structure (grid or points) ----------------------------------------------
    def _tissue(self, w: _Where) -> np.ndarray:
        cfg = self.config
        if cfg.tissue_shape == "blob":
            hx, hy = self._half
            r4 = ((w.X - self._centre[0]) / hx) ** 4 + ((w.Y - self._centre[1]) / hy) ** 4
            wobble = np.clip(w.fbm(0.6 * min(hx, hy), self._s["shape"], 3), -2.5, 2.5)
            field = 1.0 - r4 + 0.22 * wobble
            soft = 4.0 / min(hx, hy)
            mask = smoothstep(0.35 - soft, 0.35 + soft, field)
        else:
            mask = np.ones(np.broadcast_shapes(np.shape(w.X), np.shape(w.Y)))
        if np.isfinite(self._hole_threshold):
            n = w.fbm(60.0, self._s["holes"], 2)
            t = self._hole_threshold
            mask = mask * (1.0 - smoothstep(t - 0.05, t + 0.05, n))
        return mask

    def _cellularity(self, w: _Where) -> np.ndarray:
        return smoothstep(-0.4, 0.6, w.fbm(250.0, self._s["cell"], 3))

    def _fibre_mix(self, w: _Where) -> np.ndarray:
        """Weight of horizontally running fibres (1) against vertical ones (0)."""
        return smoothstep(-0.35, 0.35, w.fbm(400.0, self._s["fibre_dir"], 2))

    def tissue_mask(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        return self._tissue(
            _Where(np.asarray(xs_um, float), np.asarray(ys_um, float), True)
        ).astype(np.float32)

    # -- objects ------------------------------------------------------------------------------
    def _chunk_range(self, lo: float, hi: float, size: float) -> range:
        return range(math.floor(lo / size), math.floor(hi / size) + 1)

    def _nucleus_candidates_uncached(self, ci: int, cj: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(derive_seed(self._s["nuclei"], ci, cj))
        cfg = self.config
        dmax = max(cfg.nuclei_density_cellular, cfg.nuclei_density_stroma)
        n = rng.poisson(dmax * NUCLEUS_CHUNK_UM**2 / 1000.0)
        x = (ci + rng.random(n)) * NUCLEUS_CHUNK_UM
        y = (cj + rng.random(n)) * NUCLEUS_CHUNK_UM
        u = rng.random((8, n))  # thinning, type, size, shape, angle, depth, stain, positivity
        u[5] = _stratified(u[5], rng)
        return x, y, u

    def _nuclei(self, x0: float, x1: float, y0: float, y1: float) -> _Objects:
        cfg = self.config
        ext = _MAX_NUCLEUS_UM + 1.0
        parts = [
            self._nucleus_candidates(ci, cj)
            for ci in self._chunk_range(x0 - ext, x1 + ext, NUCLEUS_CHUNK_UM)
            for cj in self._chunk_range(y0 - ext, y1 + ext, NUCLEUS_CHUNK_UM)
        ]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        u = np.concatenate([p[2] for p in parts], axis=1)
        if not len(x):
            return _Objects.concat([])
        w = _Where(x, y, False)
        cell = self._cellularity(w)
        dmax = max(cfg.nuclei_density_cellular, cfg.nuclei_density_stroma, 1e-9)
        density = self._tissue(w) * (
            cfg.nuclei_density_stroma
            + (cfg.nuclei_density_cellular - cfg.nuclei_density_stroma) * cell
        )
        keep = u[0] * dmax < density
        x, y, u, cell, fibre = (
            x[keep],
            y[keep],
            u[:, keep],
            cell[keep],
            self._fibre_mix(_Where(x[keep], y[keep], False)),
        )
        epithelial = u[1] < cell
        # epithelial: round-ish, 2.8-4.3 um semi-axis; stromal: spindles along the fibres
        a = np.where(epithelial, 2.8 + 1.5 * u[2], 4.0 + 2.5 * u[2])
        b = np.where(epithelial, a * (0.7 + 0.3 * u[3]), 1.2 + 0.8 * u[3])
        along = np.where(fibre > 0.5, 0.0, np.pi / 2) + 0.25 * (u[4] - 0.5)
        angle = np.where(epithelial, np.pi * u[4], along)
        return self._finish_nuclei(x, y, a, b, angle, u[5], u[6], u[7])

    def _finish_nuclei(self, x, y, a, b, angle, u_depth, u_stain, u_pos) -> _Objects:
        """Depth and stain amounts for nuclei (shared by free and gland-lining nuclei)."""
        cfg = self.config
        rz = b  # vertical semi-axis: the short lateral one (nuclei are flattened ellipsoids)
        half_t = cfg.thickness_um / 2
        zc = (u_depth - 0.5) * 2 * (half_t + 0.5 * rz)
        if cfg.stain == "he":
            amount1 = 0.75 + 0.4 * u_stain
            amount2 = np.full_like(amount1, 0.05)  # a little eosin in the nucleus
        else:
            positive = u_pos < cfg.dab_positive_fraction
            amount1 = np.where(positive, 0.12 + 0.15 * u_stain, 0.4 + 0.3 * u_stain)
            amount2 = np.where(positive, 0.7 + 0.7 * u_stain, 0.0)
        s = cfg.stain_strength
        return _Objects(x, y, a, b, angle, zc, rz, amount1 * s, amount2 * s)

    def _lumen_chunk_uncached(self, ci: int, cj: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(derive_seed(self._s["lumens"], ci, cj))
        n = rng.poisson(self.config.lumen_density_per_mm2 * (LUMEN_CHUNK_UM / 1000.0) ** 2)
        x = (ci + rng.random(n)) * LUMEN_CHUNK_UM
        y = (cj + rng.random(n)) * LUMEN_CHUNK_UM
        u = rng.random((5, n))
        a = 8.0 + (_MAX_LUMEN_UM - 8.0) * u[1] ** 1.5
        b = a * (0.45 + 0.55 * u[2])
        angle = np.pi * u[3]
        return x, y, a, b, angle, u[0], rng.integers(0, 2**62, n)

    def _lumens(self, x0: float, x1: float, y0: float, y1: float) -> tuple[np.ndarray, ...]:
        ext = _MAX_LUMEN_UM + _LINING_OFFSET_UM + _MAX_NUCLEUS_UM + 1.0
        parts = [
            self._lumen_chunk(ci, cj)
            for ci in self._chunk_range(x0 - ext, x1 + ext, LUMEN_CHUNK_UM)
            for cj in self._chunk_range(y0 - ext, y1 + ext, LUMEN_CHUNK_UM)
        ]
        cols = [np.concatenate([p[i] for p in parts]) for i in range(7)]
        if not len(cols[0]):
            return tuple(cols)
        w = _Where(cols[0], cols[1], False)
        keep = cols[5] < self._cellularity(w) ** 2 * self._tissue(w)
        return tuple(c[keep] for c in cols)

    def _lining_nuclei(self, lumens: tuple[np.ndarray, ...]) -> _Objects:
        """A ring of nuclei around each lumen, oriented perpendicular to the wall."""
        parts = []
        for lx, ly, la, lb, lang, _, lseed in zip(*lumens, strict=True):
            rng = np.random.default_rng(int(lseed))
            ra, rb = la + _LINING_OFFSET_UM, lb + _LINING_OFFSET_UM
            perimeter = np.pi * (3 * (ra + rb) - np.sqrt((3 * ra + rb) * (ra + 3 * rb)))
            n = max(6, int(perimeter / 7.0))
            t = (np.arange(n) + 0.3 * rng.random(n)) * (2 * np.pi / n)
            ca, sa = np.cos(lang), np.sin(lang)
            px, py = ra * np.cos(t), rb * np.sin(t)
            x = lx + px * ca - py * sa
            y = ly + px * sa + py * ca
            normal = np.arctan2(ra * np.sin(t), rb * np.cos(t)) + lang
            u = rng.random((5, n))
            u[2] = _stratified(u[2], rng)
            a = 3.0 + 1.2 * u[0]
            b = a * (0.55 + 0.25 * u[1])
            parts.append(self._finish_nuclei(x, y, a, b, normal, u[2], u[3], u[4]))
        return _Objects.concat(parts)

    # -- rasterisation --------------------------------------------------------------------------
    def _slabs(self) -> tuple[np.ndarray, np.ndarray, float]:
        t = self.thickness_um / self.n_layers
        return self.layer_heights_um - t / 2, self.layer_heights_um + t / 2, t

    def _splat_nuclei(
        self, obj: _Objects, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-slab amounts of both stains from the nuclei -> two (L, H, W) float32 arrays."""
        dx = float(xs[1] - xs[0])
        H, W, L = len(ys), len(xs), self.n_layers
        bottoms, tops, slab = self._slabs()
        pad = int(math.ceil((_MAX_NUCLEUS_UM + 1.0) / dx)) + 1
        hc, wc = H + 2 * pad, W + 2 * pad
        out1 = np.zeros((L, hc, wc), np.float32)
        out2 = np.zeros_like(out1)
        if not len(obj):
            return out1[:, pad:-pad, pad:-pad], out2[:, pad:-pad, pad:-pad]
        half_box = np.ceil((obj.a + _EDGE_UM) / dx).astype(int) + 1
        half_box = np.minimum(half_box, pad)
        acc: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(L)]
        for hb in np.unique(half_box):
            sel = np.nonzero(half_box == hb)[0]
            for start in range(0, len(sel), 1024):
                o = obj.select(sel[start : start + 1024])
                self._splat_group(
                    o, int(hb), xs[0], ys[0], dx, pad, bottoms, tops, slab, (hc, wc), acc
                )
        # scatter-add (overlapping objects sum, as absorption does): one pass per slab
        for k in range(L):
            if not acc[k]:
                continue
            idx = np.concatenate([p[0] for p in acc[k]])
            out1[k] = np.bincount(idx, np.concatenate([p[1] for p in acc[k]]), hc * wc).reshape(
                hc, wc
            )
            w2 = np.concatenate([p[2] for p in acc[k]])
            if w2.any():
                out2[k] = np.bincount(idx, w2, hc * wc).reshape(hc, wc)
        return out1[:, pad:-pad, pad:-pad], out2[:, pad:-pad, pad:-pad]

    def _splat_group(self, o, hb, x0, y0, dx, pad, bottoms, tops, slab, canvas, acc) -> None:
        """Per-slab (pixel index, stain-1 weight, stain-2 weight) of one box size's objects,
        appended to `acc[k]`; `canvas` is the padded (H, W)."""
        off = np.arange(-hb, hb + 1)
        ic = np.rint((o.cx - x0) / dx).astype(int)
        jc = np.rint((o.cy - y0) / dx).astype(int)
        dX = (x0 + (ic[:, None] + off) * dx - o.cx[:, None]).astype(np.float32)[:, None, :]
        dY = (y0 + (jc[:, None] + off) * dx - o.cy[:, None]).astype(np.float32)[:, :, None]
        c = np.cos(o.angle).astype(np.float32)[:, None, None]
        s = np.sin(o.angle).astype(np.float32)[:, None, None]
        a = o.a.astype(np.float32)[:, None, None]
        b = o.b.astype(np.float32)[:, None, None]
        u = dX * c + dY * s
        v = dY * c - dX * s
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        lateral = np.clip((1.0 - q) * b / _EDGE_UM + 0.5, 0.0, 1.0)
        qc = np.minimum(q, 1.0)
        rim = 0.8 + 0.4 * qc**4  # chromatin condensed at the nuclear membrane
        half_h = o.rz.astype(np.float32)[:, None, None] * np.sqrt(1.0 - qc * qc)
        zc = o.zc.astype(np.float32)[:, None, None]
        base = lateral * rim
        hc, wc = canvas
        n_box = 2 * hb + 1
        rows0 = jc - hb + pad
        cols0 = ic - hb + pad
        # boxes wholly on the canvas (a centre far outside the field cannot reach it)
        ok = (rows0 >= 0) & (cols0 >= 0) & (rows0 + n_box <= hc) & (cols0 + n_box <= wc)
        if not ok.any():
            return
        start = (rows0 * wc + cols0)[ok]
        local = (off[:, None] + hb) * wc + (off[None, :] + hb)
        idx = (start[:, None, None] + local[None]).ravel()
        a1 = o.amount1[ok].astype(np.float32)[:, None, None]
        a2 = o.amount2[ok].astype(np.float32)[:, None, None]
        base, half_h, zc = base[ok], half_h[ok], zc[ok]
        for k in range(self.n_layers):
            if slab > 1e-9:
                overlap = np.minimum(zc + half_h, tops[k]) - np.maximum(zc - half_h, bottoms[k])
                frac = np.clip(overlap / slab, 0.0, 1.0)
            else:
                frac = (np.abs(zc - self.layer_heights_um[k]) <= half_h).astype(np.float32)
            wk = base * frac * np.float32(1.0 / self.n_layers)
            acc[k].append((idx, (wk * a1).ravel(), (wk * a2).ravel()))

    def _lumen_mask(self, lumens: tuple[np.ndarray, ...], xs: np.ndarray, ys: np.ndarray):
        """1 inside lumens (no tissue), 0 elsewhere, soft edges -> (H, W) float32."""
        dx = float(xs[1] - xs[0])
        mask = np.zeros((len(ys), len(xs)), np.float32)
        for lx, ly, la, lb, lang, _, _ in zip(*lumens, strict=True):
            i0 = max(0, int((lx - la - 1 - xs[0]) / dx))
            i1 = min(len(xs), int((lx + la + 1 - xs[0]) / dx) + 2)
            j0 = max(0, int((ly - la - 1 - ys[0]) / dx))
            j1 = min(len(ys), int((ly + la + 1 - ys[0]) / dx) + 2)
            if i0 >= i1 or j0 >= j1:
                continue
            X = (xs[i0:i1] - lx)[None, :]
            Y = (ys[j0:j1] - ly)[:, None]
            c, s = np.cos(lang), np.sin(lang)
            q = np.sqrt(((X * c + Y * s) / la) ** 2 + ((Y * c - X * s) / lb) ** 2)
            inside = np.clip((1.0 - q) * lb / 0.5 + 0.5, 0.0, 1.0).astype(np.float32)
            np.maximum(mask[j0:j1, i0:i1], inside, out=mask[j0:j1, i0:i1])
        return mask

    # -- the specimen -------------------------------------------------------------------------
    def stain_layers(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Stain amounts per slab -> (L, 2, H, W) float32: [nuclear stain, second stain]."""
        xs = np.asarray(xs_um, np.float64)
        ys = np.asarray(ys_um, np.float64)
        cfg = self.config
        grid = _Where(xs, ys, True)
        x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
        tissue = self._tissue(grid).astype(np.float32)
        lumens = self._lumens(x0, x1, y0, y1)
        open_tissue = tissue * (1.0 - self._lumen_mask(lumens, xs, ys))
        nuclei = _Objects.concat([self._nuclei(x0, x1, y0, y1), self._lining_nuclei(lumens)])
        nuc1, nuc2 = self._splat_nuclei(nuclei, xs, ys)
        cell = self._cellularity(grid).astype(np.float32)
        horizontal = self._fibre_mix(grid).astype(np.float32)
        L = self.n_layers
        dx = float(xs[1] - xs[0])
        # background stains (whole-section amounts shared evenly by the slabs), pre-weighted
        share = open_tissue * np.float32(cfg.stain_strength / L)
        cell_w = cell * share
        stroma_w = share - cell_w
        he = cfg.stain == "he"
        # textures are 3-D: slabs closer than a structure's size share it (membranes and
        # fibre bundles run through the section, chromatin granules are ~1 um)
        h = self.layer_heights_um
        chromatin = value_noise_3d(xs, ys, h, 0.9, 1.5, self._s["chromatin"])
        cell_field = value_noise_3d(xs, ys, h, 8.0, 8.0, self._s["cells"])
        grain = fbm_3d(xs, ys, h, 2.5, self._s["cyto"], 2)
        fibre_h = value_noise_3d(xs, ys, h, (30.0, 3.0), 4.0, self._s["fibre_h"])
        fibre_v = value_noise_3d(xs, ys, h, (3.0, 30.0), 4.0, self._s["fibre_v"])
        out = np.empty((L, 2, len(ys), len(xs)), np.float32)
        for k in range(L):
            # chromatin texture modulates the nuclear stain
            chrom = chromatin[k]
            chrom *= np.float32(0.35)
            chrom += np.float32(1.0)
            np.maximum(chrom, 0.0, out=chrom)
            chrom *= open_tissue
            # cytoplasm: fine granularity plus thin membranes along the zero set of a noise
            # field about one cell across (|n| / |grad n| is the distance to that set)
            cells = cell_field[k]
            gy, gx = np.gradient(cells, dx)
            gx *= gx
            gy *= gy
            gx += gy
            gx *= np.float32(0.35**2)
            gx += np.float32(1e-6)
            cells *= cells
            np.divide(cells, gx, out=cells)
            np.negative(cells, out=cells)
            membranes = np.exp(cells, out=cells)
            cyto = grain[k]
            cyto *= np.float32(0.25)
            cyto += np.float32(0.8)
            membranes *= np.float32(0.6)
            cyto += membranes
            cyto *= cell_w  # cytoplasm texture x cellular weight
            # collagen fibres: ridges of stretched noise, running along x or y by region
            fib = 1.0 - np.abs(fibre_h[k])
            fib *= horizontal
            fib_v = 1.0 - np.abs(fibre_v[k])
            fib_v *= 1.0 - horizontal
            fib += fib_v
            np.clip(fib, 0.0, 1.0, out=fib)
            fib = fib * fib * fib
            fib *= stroma_w
            o1, o2 = out[k, 0], out[k, 1]
            np.multiply(nuc1[k], chrom, out=o1)
            np.multiply(nuc2[k], chrom, out=o2)
            if he:
                o1 += np.float32(0.11) * cyto + np.float32(0.05) * stroma_w
                o2 += np.float32(0.15) * cyto + np.float32(0.45 * 0.35) * stroma_w
                o2 += np.float32(0.45 * 0.9) * fib
            else:
                o1 += np.float32(0.06) * cyto + np.float32(0.05 * 0.4) * stroma_w
                o1 += np.float32(0.05 * 0.8) * fib
                o2 += np.float32(0.02) * cyto
        return out

    def od_layers(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        return od_from_stains(self.stain_layers(xs_um, ys_um), self.stain_vectors)

    def overview_od(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Expected OD without individual nuclei: cheap at any resolution."""
        cfg = self.config
        grid = _Where(np.asarray(xs_um, float), np.asarray(ys_um, float), True)
        tissue = self._tissue(grid)
        cell = self._cellularity(grid)
        density = (
            cfg.nuclei_density_stroma
            + (cfg.nuclei_density_cellular - cfg.nuclei_density_stroma) * cell
        )
        nuclear_area = np.clip(density * 35.0 / 1000.0, 0, 1)  # ~35 um^2 per nucleus
        if cfg.stain == "he":
            a1 = nuclear_area * 0.9 + cell * 0.09 + (1 - cell) * 0.05
            a2 = cell * 0.26 + (1 - cell) * 0.4
        else:
            a1 = nuclear_area * 0.45 + cell * 0.06 + (1 - cell) * 0.05
            a2 = nuclear_area * cfg.dab_positive_fraction * 1.0 + cell * 0.02
        amounts = np.stack([a1, a2])[None] * (tissue * cfg.stain_strength)
        return od_from_stains(amounts.astype(np.float32), self.stain_vectors)[0]
