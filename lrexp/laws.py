"""Schedule-loss laws: the loss curve as a function of the learning-rate schedule alone, fitted to a few
runs and used to predict the others. numpy and scipy only.

Two laws, each a function of the LR sequence eta_1..eta_T (normalised by the fitted runs' peak LR, so
the parameters are comparable across tasks; the LR of step t is the one its update applied):

- the multi-power law (MPL) of Luo et al. 2025 (arXiv:2503.12811):
      L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t),   S1(t) = sum_{tau<=t} eta_tau,
      LD(t) = B sum_{k<=t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)),   S_k(t) = sum_{k<=tau<=t} eta_tau,
      G(x) = 1 - (C x + 1)^-beta,
  with S_W the warm-up's area (here simply part of S1: the sums run over every step), and the loss-drop
  sum over the steps after the LR's peak (rises after it count with their sign: cyclic schedules);
- the momentum law of Tissue et al. 2024 (arXiv:2408.11029):
      L(t) = L0 + A S1(t)^-alpha - C S2(t),   S2(t) = sum_{i<=t} m_i,   m_i = lam m_{i-1} + (eta_{i-1} - eta_i).

Both are fitted as their papers fit them: a Huber loss (delta 1e-3) on the residuals of log loss, from
several starting points, keeping the best (scipy.optimize.least_squares). Points before FIT_FROM of the
run are left out of the fit and of the errors: there S1 is near 0 and every law is a power-law
singularity, not a schedule effect.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, signal

HUBER_DELTA = 1e-3  # on log-loss residuals, as Luo et al. fit
FIT_FROM = 0.1  # points before this fraction of the run are not fitted, nor scored
EPS = 1e-12  # an LR of exactly 0 (schedules that decay to zero) as a tiny one: 0^-gamma is infinite


@dataclass
class Curve:
    """One schedule's measured loss curve (the mean over its seeds) and the LR of every step."""

    label: str
    lrs: np.ndarray  # (T,) the LR each step's update applied
    steps: np.ndarray  # (P,) the 0-based steps the loss was measured after
    loss: np.ndarray  # (P,) mean over seeds
    spread: np.ndarray  # (P,) the seeds' standard deviation (0 for one seed)
    seeds: int = 1

    def scored(self) -> np.ndarray:
        """The points fitted and scored: from FIT_FROM of the run on."""
        return self.steps >= FIT_FROM * len(self.lrs)


@dataclass
class Law:
    """A fitted law: its name, its parameters and the LR scale it was fitted at."""

    name: str
    params: np.ndarray
    scale: float  # the LR that is 1 in the law's units (the fitted runs' peak)
    fit_r2: float = float("nan")  # on the fitted points, in log loss
    names: tuple[str, ...] = field(default=())

    def predict(self, lrs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return LAWS[self.name].formula(np.asarray(lrs, dtype=float) / self.scale, np.asarray(steps, dtype=int), self.params)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, (float(p) for p in self.params)))


# --- the two laws ----------------------------------------------------------------------------------


PEAK_TOLERANCE = 1e-9  # relative: torch's recursive schedulers return to their peak a few ulps off it


def warmup_end(eta: np.ndarray) -> int:
    """The first step at the peak LR (within PEAK_TOLERANCE): where warm-up ends and the law's decay terms
    start. Not argmax: torch's recursive CosineAnnealingLR comes back to its peak at 2/3 of the default
    ``cosine`` run a hair above step 0's value (0.0010000000000000356 vs 0.001), and argmax would drop the
    first decay and rise from the law."""
    top = float(np.max(eta))
    return int(np.flatnonzero(eta >= top * (1 - PEAK_TOLERANCE))[0])


def multi_power(eta: np.ndarray, steps: np.ndarray, params: np.ndarray) -> np.ndarray:
    l0, a, alpha, b, c, beta, gamma = params
    area = np.cumsum(eta)  # area[t] = S1(t): the updates 0..t
    peak = warmup_end(eta)
    drop = np.zeros_like(eta)
    drop[peak + 1 :] = eta[peak:-1] - eta[peak + 1 :]  # eta_{k-1} - eta_k, after the peak
    ks = np.flatnonzero(drop)
    out = l0 + a * np.maximum(area[steps], EPS) ** -alpha
    if ks.size:
        # S_k(t) = area[t] - area[k-1] for every queried t and every k <= t that drops.
        s_k = area[steps][:, None] - area[ks - 1][None, :]
        x = np.where(ks[None, :] <= steps[:, None], s_k, 0.0) * np.maximum(eta[ks], EPS)[None, :] ** -gamma
        out = out - b * ((1.0 - (c * x + 1.0) ** -beta) * drop[ks][None, :]).sum(axis=1)
    return out


def momentum(eta: np.ndarray, steps: np.ndarray, params: np.ndarray) -> np.ndarray:
    l0, a, alpha, c, lam = params
    area = np.cumsum(eta)
    drop = np.zeros_like(eta)
    drop[1:] = eta[:-1] - eta[1:]
    m = signal.lfilter([1.0], [1.0, -lam], drop)  # m_i = lam m_{i-1} + drop_i: a first-order IIR filter
    s2 = np.cumsum(m)
    return l0 + a * np.maximum(area[steps], EPS) ** -alpha - c * s2[steps]


@dataclass(frozen=True)
class LawSpec:
    formula: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    label: str


LAWS: dict[str, LawSpec] = {
    "mpl": LawSpec(
        multi_power,
        ("L0", "A", "alpha", "B", "C", "beta", "gamma"),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (np.inf, np.inf, 3.0, np.inf, np.inf, 3.0, 3.0),
        "multi-power law (Luo et al. 2025)",
    ),
    "momentum": LawSpec(
        momentum,
        ("L0", "A", "alpha", "C", "lambda"),
        (0.0, 0.0, 0.0, 0.0, 0.9),
        (np.inf, np.inf, 3.0, np.inf, 0.99999),
        "momentum law (Tissue et al. 2024)",
    ),
}


def starts(name: str, curves: Sequence[Curve]) -> list[np.ndarray]:
    """Starting points: L0 below the lowest loss, A and alpha from a power-law regression of the loss
    above L0 on the LR area (as Luo et al. initialise), the schedule terms from a small grid."""
    low = min(float(c.loss[c.scored()].min()) for c in curves)
    area = np.concatenate([np.cumsum(c.lrs)[c.steps[c.scored()]] for c in curves]) / max(float(np.max(c.lrs)) for c in curves)
    above = np.concatenate([c.loss[c.scored()] for c in curves]) - 0.9 * low
    slope, intercept = np.polyfit(np.log(np.maximum(area, EPS)), np.log(np.maximum(above, EPS)), 1)
    a, alpha = float(np.exp(intercept)), float(min(max(-slope, 0.05), 2.0))
    out = []
    for l0 in (0.5 * low, 0.8 * low, 0.95 * low):
        if name == "mpl":
            out += [np.array([l0, a, alpha, b, c, 0.5, 0.5]) for b, c in itertools.product((0.05 * low, 0.3 * low), (1.0, 10.0))]
        else:
            out += [np.array([l0, a, alpha, c, lam]) for c, lam in itertools.product((1e-4 * low, 1e-2 * low), (0.99, 0.999))]
    return out


def fit(name: str, curves: Sequence[Curve]) -> Law:
    """Fit the law to the curves together: Huber on log residuals, the best of several starting points."""
    spec = LAWS[name]
    scale = max(float(np.max(c.lrs)) for c in curves)
    etas = [c.lrs / scale for c in curves]
    points = [(eta, c.steps[c.scored()], np.log(c.loss[c.scored()])) for eta, c in zip(etas, curves)]

    def residuals(params: np.ndarray) -> np.ndarray:
        out = []
        for eta, steps, log_loss in points:
            predicted = spec.formula(eta, steps, params)
            out.append(log_loss - np.log(np.maximum(predicted, EPS)))
        return np.concatenate(out)

    best: optimize.OptimizeResult | None = None
    for x0 in starts(name, curves):
        x0 = np.clip(x0, np.array(spec.lower) + 1e-9, np.array(spec.upper) - 1e-9)
        with np.errstate(all="ignore"):
            result = optimize.least_squares(residuals, x0, bounds=(spec.lower, spec.upper), loss="huber", f_scale=HUBER_DELTA, max_nfev=400)
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    log_loss = np.concatenate([p[2] for p in points])
    r2 = 1 - float(np.sum(best.fun**2)) / float(np.sum((log_loss - log_loss.mean()) ** 2))
    return Law(name, best.x, scale, r2, spec.names)


@dataclass(frozen=True)
class Accuracy:
    """How far a law's curve lies from the measured one, relative to the measured loss, over the scored
    points; and the final point's error next to the seeds' own spread there (what error is meaningful)."""

    mean_relative: float
    worst_relative: float
    final_relative: float
    final_seed_spread: float  # the seeds' std at the last point / the mean there (nan for one seed)


def accuracy(law: Law, curve: Curve) -> Accuracy:
    keep = curve.scored()
    predicted = law.predict(curve.lrs, curve.steps[keep])
    relative = np.abs(predicted - curve.loss[keep]) / curve.loss[keep]
    spread = curve.spread[-1] / curve.loss[-1] if curve.seeds > 1 else float("nan")
    return Accuracy(float(relative.mean()), float(relative.max()), float(relative[-1]), float(spread))


# --- the schedule the law would choose -------------------------------------------------------------


@dataclass(frozen=True)
class OptimalSchedule:
    """A monotone non-increasing schedule minimising the law's final loss: the LR factor (of the peak) at
    evenly spaced knots, linear in between, and the law's predicted final loss for it."""

    knots: list[int]  # steps, 0 .. T-1 (after any warm-up: the factor applies to the steps after it)
    factors: list[float]
    predicted_final: float


def optimal_schedule(law: Law, peak: float, steps: int, warmup: int = 0, knots: int = 17) -> OptimalSchedule:
    """Minimise the law's loss after ``steps`` over schedules that warm up linearly for ``warmup`` steps,
    then decay monotonically from the peak: factors f_0 = 1 >= f_1 >= ... >= f_K >= 0 at evenly spaced
    knots, f_i = u_1 ... u_i with every u_j in [0, 1] (L-BFGS-B over u), linear in between."""
    span = steps - warmup
    at = np.linspace(0, span - 1, knots).round().astype(int)
    t = np.arange(span)
    ramp = peak * np.arange(warmup) / max(warmup, 1)

    def factors(u: np.ndarray) -> np.ndarray:
        return np.concatenate([[1.0], np.cumprod(u)])

    def final(u: np.ndarray) -> float:
        lrs = np.concatenate([ramp, peak * np.interp(t, at, factors(u))])
        return float(law.predict(lrs, np.array([steps - 1]))[0])

    best: optimize.OptimizeResult | None = None
    for start in (0.999, 0.9, 0.6):  # a constant-like start, a gentle and a steep decay
        with np.errstate(all="ignore"):
            result = optimize.minimize(final, np.full(knots - 1, start), method="L-BFGS-B", bounds=[(0.0, 1.0)] * (knots - 1))
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    return OptimalSchedule([int(k) for k in at], [float(f) for f in factors(best.x)], float(best.fun))
