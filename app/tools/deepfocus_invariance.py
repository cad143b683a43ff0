"""Sample invariance of focus scores (Shajkofci & Liebling, Section 3.1-3.2 and Table 1): is the
curve of a score against defocus the same whatever the specimen, and how much does it say about
the defocus?

Every stack is one sample. Per plane: DeepFocus's score (the median blur score over the patches
the network judges valid, probability >= 0.5; NaN where none is) and the classical metrics
high-pass energy (HPF), Tenengrad, variance of the Laplacian (LAPV), Brenner and normalised
variance (`focus/metrics.py`). Each curve is put on the defocus axis (z - true focus),
resampled (linear) on a common grid (the defocus range every stack covers, at the median
plane spacing, 0 on the grid), and normalised per sample to [0, 1] over that grid with
1 = blurriest and 0 = sharpest (the classical metrics measure sharpness and are inverted;
DeepFocus's score is a blur width already). A curve that does not vary is all 1.

Per score:

- sigma: the SD across samples (ddof = 1) at each grid point, averaged over |defocus| <=
  `range_um` (the paper's sigma, "SD in a 100 um range" for its 10x/0.3 stacks; default here
  5 depths of field);
- H: the paper's conditional entropy, exactly its formula, over the whole grid,

      H(B|Z) = - sum_{b, z} p(b|z) log( p(b|z) / sum_{z_i} p(b|z_i) ),

  with p(b|z) the share of the samples whose normalised score at defocus z falls into bin b of
  `bins` (20) equal bins over [0, 1] (1.0 in the last), natural log (nats), 0 log 0 = 0. A score
  that names z exactly (every z its own bin) gives 0; one that says nothing (every z the same
  bin) gives |Z| ln |Z|. H grows with the number of grid points, so H / |Z| is reported too; the
  paper's numbers (132 and ~120 planes) are comparable only in that sense.

Grid points where a sample has no value (DeepFocus without a valid patch on the planes around
it, at the ends of the grid) are left out of that point's SD and histogram; the count of such
sample-points is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slidescan.app.tools.deepfocus_compare import check_same_optics, optics_line
from slidescan.app.tools.eval_report import eval_dof_um
from slidescan.focus.metrics import METRICS
from slidescan.focus.protocol import OpticsLike

#: Histogram bins of the normalised score for the entropy.
ENTROPY_BINS = 20
#: Default half range of the SD average, in depths of field.
DEFAULT_RANGE_DOF = 5.0
#: A DeepFocus patch counts when the network's validity probability is at least this.
VALID_PROBABILITY = 0.5
#: The classical scores, in the paper's order where it has them: (key, label, metric name).
CLASSICAL = (
    ("highpass", "HPF (high-pass energy)", "highpass"),
    ("tenengrad", "Tenengrad", "tenengrad"),
    ("variance_of_laplacian", "LAPV (variance of Laplacian)", "variance_of_laplacian"),
    ("brenner", "Brenner", "brenner"),
    ("normalized_variance", "normalised variance", "normalized_variance"),
)


@dataclass(frozen=True)
class Scorer:
    """One focus score: `fn(image) -> float`; `blur_high` when larger means blurrier."""

    key: str
    label: str
    fn: Callable[[np.ndarray], float]
    blur_high: bool


def classical_scorers() -> list[Scorer]:
    return [Scorer(k, label, METRICS[m], blur_high=False) for k, label, m in CLASSICAL]


def deepfocus_scorer(weights: Any = None, max_patches: int = 16) -> Scorer:
    """DeepFocus's score of a frame: the median blur score (ln px) of its valid patches."""
    from slidescan.focus.learned.deepfocus_model import load_sharpness

    net = load_sharpness(weights)

    def score(image: np.ndarray) -> float:
        s = net.score_frame(np.asarray(image), max_patches)
        valid = s.valid_prob >= VALID_PROBABILITY
        return float(np.median(s.scores[valid])) if valid.any() else math.nan

    return Scorer("deepfocus", "DeepFocus (CNN)", score, blur_high=True)


@dataclass
class SampleCurves:
    """One sample (stack): its planes' defocus and each score's value per plane."""

    label: str
    defocus_um: np.ndarray
    values: dict[str, np.ndarray]


def measure_stack(
    stack: Any,
    scorers: Sequence[Scorer],
    label: str,
    progress: Callable[[], None] | None = None,
) -> SampleCurves:
    """Every score on every plane of a `FocusStack` with a known true focus."""
    if stack.true_focus_um is None:
        raise ValueError(f"{label}: the stack has no true_focus_um; its defocus is unknown")
    z = np.asarray(stack.z_um, dtype=np.float64)
    values = {s.key: np.empty(z.size) for s in scorers}
    for i in range(z.size):
        image = np.asarray(stack.images[i])
        for s in scorers:
            values[s.key][i] = s.fn(image)
        if progress is not None:
            progress()
    return SampleCurves(label, z - float(stack.true_focus_um), values)


def common_grid(samples: Sequence[SampleCurves], step_um: float | None = None) -> np.ndarray:
    """Defocus points every sample covers, `step_um` apart (default: the median plane
    spacing), on multiples of the step so 0 is a point when it is covered."""
    if not samples:
        raise ValueError("no samples to compare")
    lo = max(float(np.min(s.defocus_um)) for s in samples)
    hi = min(float(np.max(s.defocus_um)) for s in samples)
    if step_um is None:
        steps = [float(np.median(np.abs(np.diff(np.sort(s.defocus_um))))) for s in samples]
        step_um = float(np.median(steps)) if steps else math.nan
    if not (math.isfinite(step_um) and step_um > 0):
        raise ValueError("the stacks need at least two planes each")
    k0, k1 = math.ceil(lo / step_um - 1e-9), math.floor(hi / step_um + 1e-9)
    if k1 - k0 < 2:
        raise ValueError(
            f"the stacks share too little defocus range ({lo:.3g} to {hi:.3g} um) to compare"
        )
    return step_um * np.arange(k0, k1 + 1)


def resample(defocus_um: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of the finite values onto the grid; NaN outside them."""
    d = np.asarray(defocus_um, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(d)
    d, v = d[order], v[order]
    ok = np.isfinite(v)
    if ok.sum() < 2:
        return np.full(grid.shape, math.nan)
    d, v = d[ok], v[ok]
    # A grid end that misses a stack's end by rounding (z - truth = 14.999999...) is that end.
    g = np.asarray(grid, dtype=np.float64).copy()
    tol = 1e-6 * max(1.0, float(d[-1] - d[0]))
    g[(g < d[0]) & (g > d[0] - tol)] = d[0]
    g[(g > d[-1]) & (g < d[-1] + tol)] = d[-1]
    return np.interp(g, d, v, left=math.nan, right=math.nan)


def normalise(values: np.ndarray, blur_high: bool) -> np.ndarray:
    """To [0, 1] with 1 = blurriest, 0 = sharpest (NaN stays NaN; a flat curve is all 1)."""
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).any():
        return v.copy()
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    if hi - lo <= 0:
        return np.where(np.isfinite(v), 1.0, math.nan)
    n = (v - lo) / (hi - lo)
    return n if blur_high else 1.0 - n


def sd_profile(curves: np.ndarray) -> np.ndarray:
    """SD across samples (rows, ddof = 1) at each grid point (column), ignoring NaN; NaN where
    fewer than two samples have a value."""
    c = np.asarray(curves, dtype=np.float64)
    n = np.isfinite(c).sum(axis=0)
    out = np.full(c.shape[1], math.nan)
    has = n >= 2
    if has.any():
        out[has] = np.nanstd(c[:, has], axis=0, ddof=1)
    return out


def conditional_entropy(curves: np.ndarray, bins: int = ENTROPY_BINS) -> float:
    """The paper's H(B|Z) (module docstring) of normalised curves, rows = samples, columns =
    grid points; natural log. Columns without any value are left out."""
    c = np.asarray(curves, dtype=np.float64)
    if bins < 2:
        raise ValueError("the entropy needs at least 2 bins")
    cols = [c[:, j][np.isfinite(c[:, j])] for j in range(c.shape[1])]
    cols = [x for x in cols if x.size]
    if not cols:
        return math.nan
    p = np.zeros((len(cols), bins))  # p(b | z): rows z, columns b
    for j, x in enumerate(cols):
        idx = np.clip((np.clip(x, 0.0, 1.0) * bins).astype(int), 0, bins - 1)
        p[j] = np.bincount(idx, minlength=bins) / x.size
    total = p.sum(axis=0)  # sum over z_i of p(b | z_i)
    nz = p > 0
    return float(-np.sum(p[nz] * np.log(p[nz] / np.broadcast_to(total, p.shape)[nz])))


@dataclass(frozen=True)
class ScoreRow:
    key: str
    label: str
    sigma: float
    entropy: float
    entropy_per_point: float
    missing: int  # sample-points without a value


@dataclass
class InvarianceReport:
    rows: list[ScoreRow]
    samples: list[str]
    grid_um: np.ndarray
    planes: int  # planes measured, all samples
    range_um: float
    dof_um: float
    bins: int
    files: list[str] = field(default_factory=list)
    optics: str = ""
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (samples, grid)

    @property
    def most_invariant(self) -> ScoreRow:
        return min(self.rows, key=lambda r: (math.isnan(r.sigma), r.sigma))

    @property
    def most_informative(self) -> ScoreRow:
        return min(self.rows, key=lambda r: (math.isnan(r.entropy), r.entropy))

    def setup_lines(self) -> list[str]:
        g = self.grid_um
        step = float(g[1] - g[0]) if g.size > 1 else math.nan
        return [
            f"{len(self.samples)} samples (stacks), {self.planes} planes measured"
            + (f", optics {self.optics}" if self.optics else ""),
            f"common defocus grid: {g.size} points, {g[0]:.3g} to {g[-1]:.3g} um, step "
            f"{step:.3g} um; each curve normalised over it to [0, 1] (1 = blurriest)",
            f"sigma: SD across samples (ddof 1) averaged over |defocus| <= {self.range_um:.3g} um "
            f"({self.range_um / self.dof_um:.1f} DOF, DOF {self.dof_um:.3g} um)",
            f"H: -sum_(b,z) p(b|z) ln(p(b|z) / sum_i p(b|z_i)), {self.bins} equal bins on [0, 1], "
            f"natural log, whole grid; H/|Z| = H per grid point",
        ]

    def verdict(self) -> str:
        a, b = self.most_invariant, self.most_informative
        return (
            f"most sample-invariant: {a.label} (sigma {a.sigma:.3f}); most informative about "
            f"defocus: {b.label} (H {b.entropy:.2f})"
        )

    def format_table(self) -> str:
        head = f"{'score':<30} {'sigma':>7} {'H (nats)':>9} {'H/|Z|':>7} {'missing':>8}"
        lines = [*self.setup_lines(), "", head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.label:<30} {r.sigma:>7.3f} {r.entropy:>9.2f} "
                f"{r.entropy_per_point:>7.3f} {r.missing:>8d}"
            )
        lines += ["", self.verdict()]
        return "\n".join(lines)

    def format_markdown(self) -> str:
        lines = [
            "| Focus score function | sigma | H | H / \\|Z\\| |",
            "|---|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.label} | {r.sigma:.3f} | {r.entropy:.2f} | {r.entropy_per_point:.3f} |"
            )
        notes = "; ".join(self.setup_lines())
        return "\n".join([*lines, "", f"{notes}. {self.verdict()}."])

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "files": self.files,
            "optics": self.optics,
            "planes": self.planes,
            "grid_points": int(self.grid_um.size),
            "grid_um": [float(self.grid_um[0]), float(self.grid_um[-1])],
            "range_um": self.range_um,
            "dof_um": self.dof_um,
            "bins": self.bins,
            "log": "natural (nats)",
            "sigma": "SD across samples (ddof 1), averaged over |defocus| <= range_um",
            "entropy": "-sum_(b,z) p(b|z) ln(p(b|z) / sum_i p(b|z_i)) over the whole grid",
            "scores": [
                {
                    "key": r.key,
                    "label": r.label,
                    "sigma": r.sigma,
                    "entropy": r.entropy,
                    "entropy_per_point": r.entropy_per_point,
                    "missing": r.missing,
                }
                for r in self.rows
            ],
            "most_invariant": self.most_invariant.key,
            "most_informative": self.most_informative.key,
        }


def invariance(
    samples: Sequence[SampleCurves],
    scorers: Sequence[Scorer],
    range_um: float,
    dof_um: float,
    bins: int = ENTROPY_BINS,
) -> InvarianceReport:
    """Sigma and H per score over these samples (module docstring)."""
    if len(samples) < 2:
        raise ValueError(f"sample invariance needs at least 2 stacks, got {len(samples)}")
    if not (math.isfinite(range_um) and range_um > 0):
        raise ValueError(f"the SD range must be a positive number of um, got {range_um}")
    grid = common_grid(samples)
    near = np.abs(grid) <= range_um + 1e-9
    if not near.any():
        raise ValueError(f"no grid point lies within +/-{range_um:g} um of focus")
    rows, curves = [], {}
    for s in scorers:
        c = np.stack(
            [normalise(resample(x.defocus_um, x.values[s.key], grid), s.blur_high) for x in samples]
        )
        curves[s.key] = c
        sd = sd_profile(c[:, near])
        sigma = float(np.nanmean(sd)) if np.isfinite(sd).any() else math.nan
        h = conditional_entropy(c, bins)
        rows.append(ScoreRow(s.key, s.label, sigma, h, h / grid.size, int((~np.isfinite(c)).sum())))
    return InvarianceReport(
        rows=rows,
        samples=[x.label for x in samples],
        grid_um=grid,
        planes=sum(int(x.defocus_um.size) for x in samples),
        range_um=float(range_um),
        dof_um=float(dof_um),
        bins=bins,
        curves=curves,
    )


def measure_files(
    opened: Sequence[tuple[str, Any]],
    scorers: Sequence[Scorer],
    range_um: float | None = None,
    bins: int = ENTROPY_BINS,
    progress: Callable[[], None] | None = None,
) -> InvarianceReport:
    """Every stack of every open (label, `StackFile`) as one sample; the files must share their
    optics. `range_um` default: `DEFAULT_RANGE_DOF` depths of field. `progress()` after each
    plane."""
    if not opened:
        raise ValueError("no stack files given")
    check_same_optics([(label, f.optics) for label, f in opened])
    optics: OpticsLike = opened[0][1].optics
    dof = eval_dof_um(optics)
    samples = []
    for label, f in opened:
        for i in range(len(f)):
            stack = f[i]
            samples.append(measure_stack(stack, scorers, f"{label}:{stack.id}", progress))
    rng = range_um if range_um is not None else DEFAULT_RANGE_DOF * dof
    report = invariance(samples, scorers, rng, dof, bins)
    report.files = [label for label, _ in opened]
    report.optics = optics_line(optics)
    return report
