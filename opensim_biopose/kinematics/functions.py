"""OpenSim scalar functions (transform-axis and coupler functions) as batched tensor math.

Every OpenSim ``Function`` a kinematic model uses reduces to ``scale * g(x)`` where ``g`` is
either a polynomial (Constant, LinearFunction, PolynomialFunction) or a piecewise cubic
(SimmSpline, PiecewiseLinearFunction); MultiplierFunction only folds
into ``scale``. A :class:`FunctionTable` holds A such functions padded into a few tensors and
evaluates all of them for a batch in one go, differentiably in the argument.

Spline coefficients are computed here (float64) from the knots, in the form used by OpenSim's
splines: on knot interval k, ``g(x) = y_k + dx (b_k + dx (c_k + dx d_k))`` with ``dx = x - x_k``,
and linear extrapolation with the end slopes ``b_0`` / ``b_{n-1}`` outside the knots.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

SplineCoefficients = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class PolynomialSpec:
    """``scale * sum_i coefficients[i] * x**(deg - i)`` (highest power first, OpenSim's order)."""

    coefficients: tuple[float, ...]
    scale: float = 1.0


@dataclass(frozen=True)
class SplineSpec:
    """A piecewise cubic through knots ``(x, y)``; ``kind`` selects the end conditions."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    kind: str  # "simm" | "linear" (keys of SPLINE_KINDS)
    scale: float = 1.0


FunctionSpec = PolynomialSpec | SplineSpec


def _divided_differences(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Knot spacings h (n-1,) and first divided differences delta (n-1,)."""
    h = x[1:] - x[:-1]
    return h, (y[1:] - y[:-1]) / h


def _coefficients_from_sigma(x: Tensor, y: Tensor, sigma: Tensor) -> SplineCoefficients:
    """Polynomial coefficients b, c, d (n,) from sigma = g''/6 at the knots (n,)."""
    h, delta = _divided_differences(x, y)
    b = torch.empty_like(x)
    b[:-1] = delta - h * (sigma[1:] + 2.0 * sigma[:-1])
    b[-1] = delta[-1] + h[-1] * (sigma[-2] + 2.0 * sigma[-1])
    d = torch.empty_like(x)
    d[:-1] = (sigma[1:] - sigma[:-1]) / h
    d[-1] = d[-2]
    return b, 3.0 * sigma, d


def _linear_coefficients(x: Tensor, y: Tensor) -> SplineCoefficients:
    """Two knots: a straight line (both end slopes equal the secant)."""
    _, delta = _divided_differences(x, y)
    b = delta.expand(2).clone()
    return b, torch.zeros_like(x), torch.zeros_like(x)


def _interior_system(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Continuity of g' at interior knots: rows 1..n-2 of the (n, n) system in sigma."""
    n = x.numel()
    h, delta = _divided_differences(x, y)
    a = torch.zeros(n, n, dtype=x.dtype)
    rhs = torch.zeros(n, dtype=x.dtype)
    for i in range(1, n - 1):
        a[i, i - 1] = h[i - 1]
        a[i, i] = 2.0 * (h[i - 1] + h[i])
        a[i, i + 1] = h[i]
        rhs[i] = delta[i] - delta[i - 1]
    return a, rhs


def simm_spline_coefficients(x: Tensor, y: Tensor) -> SplineCoefficients:
    """Coefficients of OpenSim's SimmSpline through knots x, y (n,) float64.

    End conditions after Forsythe, Malcolm & Moler (1977), "Computer Methods for Mathematical
    Computations", routine SPLINE (which SIMM/OpenSim's SimmSpline follows): the spline's third
    derivative at each end equals that of the cubic through the four end knots (n > 3); with
    three knots the end second derivatives equal their neighbours'.
    """
    n = x.numel()
    if n == 2:
        return _linear_coefficients(x, y)
    a, rhs = _interior_system(x, y)
    h, delta = _divided_differences(x, y)
    a[0, 0], a[0, 1] = -h[0], h[0]
    a[-1, -2], a[-1, -1] = h[-1], -h[-1]
    if n > 3:
        second = (delta[1:] - delta[:-1]) / (x[2:] - x[:-2])
        third_start = (second[1] - second[0]) / (x[3] - x[0])
        third_end = (second[-1] - second[-2]) / (x[-1] - x[-4])
        rhs[0] = third_start * h[0] ** 2
        rhs[-1] = -third_end * h[-1] ** 2
    sigma = torch.linalg.solve(a, rhs)
    return _coefficients_from_sigma(x, y, sigma)


def piecewise_linear_coefficients(x: Tensor, y: Tensor) -> SplineCoefficients:
    """Straight segments between knots; end slopes continue outside the knots."""
    _, delta = _divided_differences(x, y)
    b = torch.cat([delta, delta[-1:]])
    return b, torch.zeros_like(x), torch.zeros_like(x)


SPLINE_KINDS: dict[str, Callable[[Tensor, Tensor], SplineCoefficients]] = {
    "simm": simm_spline_coefficients,
    "linear": piecewise_linear_coefficients,
}


def evaluate_polynomials(coefficients: Tensor, x: Tensor) -> Tensor:
    """Horner evaluation. coefficients (A, P) highest power first; x (A, B) -> (A, B)."""
    value = coefficients[:, :1].expand_as(x)
    for i in range(1, coefficients.shape[1]):
        value = value * x + coefficients[:, i : i + 1]
    return value


def polynomial_slopes(coefficients: Tensor, x: Tensor) -> Tensor:
    """Derivatives d/dx of the polynomials of :func:`evaluate_polynomials`: (A, P), (A, B) -> (A, B)."""
    degree = coefficients.shape[1] - 1
    if degree == 0:
        return torch.zeros_like(x)
    powers = torch.arange(degree, 0, -1, dtype=coefficients.dtype, device=coefficients.device)
    return evaluate_polynomials(coefficients[:, :-1] * powers, x)


def polynomial_values_and_slopes(coefficients: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`evaluate_polynomials` and :func:`polynomial_slopes` in one Horner pass."""
    value = coefficients[:, :1].expand_as(x)
    slope = torch.zeros_like(x)
    for i in range(1, coefficients.shape[1]):
        slope = slope * x + value
        value = value * x + coefficients[:, i : i + 1]
    return value, slope


def spline_values_and_slopes(knots: Tensor, coeffs: Tensor, last: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`evaluate_splines` and :func:`spline_slopes` (same arguments) sharing the interval
    search and coefficient gathers."""
    k = _spline_interval(knots, last, x)
    y, b, c, d = torch.gather(coeffs, 2, k.unsqueeze(0).expand(4, -1, -1)).unbind(0)
    dx = x - torch.gather(knots, 1, k)
    value = y + dx * (b + dx * (c + dx * d))
    slope = b + dx * (2.0 * c + 3.0 * dx * d)
    end = last.unsqueeze(1)
    x0, y0, b0 = knots[:, :1], coeffs[0, :, :1], coeffs[1, :, :1]
    xn, yn, bn = torch.gather(knots, 1, end), torch.gather(coeffs[0], 1, end), torch.gather(coeffs[1], 1, end)
    before, after = x < x0, x > xn
    value = torch.where(before, y0 + b0 * (x - x0), torch.where(after, yn + bn * (x - xn), value))
    slope = torch.where(before, b0, torch.where(after, bn, slope))
    return value, slope


def _spline_interval(knots: Tensor, last: Tensor, x: Tensor) -> Tensor:
    """(A, B) long: knot interval of each x, clamped to the first / last interval."""
    # Interval index = number of knots <= x, minus one. A comparison count over the few knots
    # (K <= ~30 in real models) is several times faster on CPU than searchsorted.
    k = (x.detach().unsqueeze(1) >= knots.unsqueeze(-1)).sum(1) - 1  # (A, B)
    return torch.minimum(k.clamp(min=0), (last - 1).unsqueeze(1))


def spline_slopes(knots: Tensor, coeffs: Tensor, last: Tensor, x: Tensor) -> Tensor:
    """Derivatives d/dx of the splines of :func:`evaluate_splines` (same arguments) -> (A, B):
    ``b + dx (2 c + 3 d dx)`` inside the knots, the end slopes outside."""
    k = _spline_interval(knots, last, x)
    b, c, d = (torch.gather(coeffs[i], 1, k) for i in (1, 2, 3))
    dx = x - torch.gather(knots, 1, k)
    inside = b + dx * (2.0 * c + 3.0 * dx * d)
    end = last.unsqueeze(1)
    slope = torch.where(x < knots[:, :1], coeffs[1, :, :1], inside)
    return torch.where(x > torch.gather(knots, 1, end), torch.gather(coeffs[1], 1, end), slope)


def evaluate_splines(knots: Tensor, coeffs: Tensor, last: Tensor, x: Tensor) -> Tensor:
    """Piecewise cubics with linear extrapolation.

    knots (A, K) ascending, padded with +inf; coeffs (4, A, K) = y, b, c, d per knot;
    last (A,) index of each function's last knot; x (A, B) -> (A, B).
    """
    k = _spline_interval(knots, last, x)
    xk = torch.gather(knots, 1, k)
    y, b, c, d = (torch.gather(coeffs[i], 1, k) for i in range(4))
    dx = x - xk
    inside = y + dx * (b + dx * (c + dx * d))
    x0, y0, b0 = knots[:, :1], coeffs[0, :, :1], coeffs[1, :, :1]
    end = last.unsqueeze(1)
    xn, yn, bn = torch.gather(knots, 1, end), torch.gather(coeffs[0], 1, end), torch.gather(coeffs[1], 1, end)
    value = torch.where(x < x0, y0 + b0 * (x - x0), inside)
    return torch.where(x > xn, yn + bn * (x - xn), value)


@dataclass(frozen=True)
class FunctionTable:
    """A functions evaluated together: ``y[a] = scale[a] * g_a(x[a])``, batch last: x, y (A, B).

    Polynomials and splines are stored in padded groups; ``order`` gathers the concatenated
    group outputs back into the caller's order. All tensors share one dtype/device.
    """

    poly_coefficients: Tensor  # (Ap, P) highest power first, left-padded with zeros
    poly_columns: Tensor  # (Ap,) long: which of the A arguments each polynomial reads
    spline_knots: Tensor  # (As, K) padded with +inf
    spline_coefficients: Tensor  # (4, As, K): y, b, c, d
    spline_last: Tensor  # (As,) long
    spline_columns: Tensor  # (As,) long
    order: Tensor  # (A,) long
    scale: Tensor  # (A,)

    @property
    def size(self) -> int:
        return int(self.order.numel())

    @staticmethod
    def build(specs: Sequence[FunctionSpec]) -> FunctionTable:
        """Pad ``specs`` into tensors (float64, CPU); move them with :meth:`to`."""
        f64 = torch.float64
        polys = [(a, s) for a, s in enumerate(specs) if isinstance(s, PolynomialSpec)]
        splines = [(a, s) for a, s in enumerate(specs) if isinstance(s, SplineSpec)]
        width = max([len(s.coefficients) for _, s in polys], default=1)
        poly = torch.zeros(len(polys), width, dtype=f64)
        for row, (_, s) in enumerate(polys):
            poly[row, width - len(s.coefficients):] = torch.tensor(s.coefficients, dtype=f64)
        n_knots = max([len(s.x) for _, s in splines], default=2)
        knots = torch.full((len(splines), n_knots), float("inf"), dtype=f64)
        coeffs = torch.zeros(4, len(splines), n_knots, dtype=f64)
        for row, (_, s) in enumerate(splines):
            x = torch.tensor(s.x, dtype=f64)
            y = torch.tensor(s.y, dtype=f64)
            b, c, d = SPLINE_KINDS[s.kind](x, y)
            knots[row, : x.numel()] = x
            coeffs[:, row, : x.numel()] = torch.stack([y, b, c, d])
        columns = [a for a, _ in polys] + [a for a, _ in splines]
        order = torch.empty(len(specs), dtype=torch.long)
        order[torch.tensor(columns, dtype=torch.long)] = torch.arange(len(specs))
        return FunctionTable(
            poly_coefficients=poly,
            poly_columns=torch.tensor([a for a, _ in polys], dtype=torch.long),
            spline_knots=knots,
            spline_coefficients=coeffs,
            spline_last=torch.tensor([len(s.x) - 1 for _, s in splines], dtype=torch.long),
            spline_columns=torch.tensor([a for a, _ in splines], dtype=torch.long),
            order=order,
            scale=torch.tensor([s.scale for s in specs], dtype=f64),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FunctionTable:
        """A copy on ``device`` with floating tensors in ``dtype`` (index tensors stay long)."""
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return FunctionTable(**{k: move(v) for k, v in self.__dict__.items()})

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate: x (A, B) arguments -> (A, B) values."""
        parts = []
        if self.poly_columns.numel():
            parts.append(evaluate_polynomials(self.poly_coefficients, x[self.poly_columns]))
        if self.spline_columns.numel():
            parts.append(
                evaluate_splines(self.spline_knots, self.spline_coefficients, self.spline_last, x[self.spline_columns])
            )
        if not parts:
            return x[:0]
        return torch.cat(parts, 0)[self.order] * self.scale.unsqueeze(1)

    def values_and_slopes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(self(x), self.slopes(x))`` in one pass: x (A, B) -> two (A, B)."""
        parts = []
        if self.poly_columns.numel():
            parts.append(torch.stack(polynomial_values_and_slopes(self.poly_coefficients, x[self.poly_columns])))
        if self.spline_columns.numel():
            parts.append(torch.stack(spline_values_and_slopes(
                self.spline_knots, self.spline_coefficients, self.spline_last, x[self.spline_columns])))
        if not parts:
            return x[:0], x[:0]
        both = torch.cat(parts, 1)[:, self.order] * self.scale.unsqueeze(1)  # (2, A, B)
        return both[0], both[1]

    def slopes(self, x: Tensor) -> Tensor:
        """Derivatives d y / d x: x (A, B) arguments -> (A, B) (exact, piecewise for splines)."""
        parts = []
        if self.poly_columns.numel():
            parts.append(polynomial_slopes(self.poly_coefficients, x[self.poly_columns]))
        if self.spline_columns.numel():
            parts.append(
                spline_slopes(self.spline_knots, self.spline_coefficients, self.spline_last, x[self.spline_columns])
            )
        if not parts:
            return x[:0]
        return torch.cat(parts, 0)[self.order] * self.scale.unsqueeze(1)
