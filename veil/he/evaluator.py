"""Server-side CKKS arithmetic with the level and scale budget tracked and checked.

An `Evaluator` holds public material only: the parameter set, relinearisation keys and
the Galois keys for the rotation steps the client agreed to. Every operation that
consumes a level checks that one is left first and raises `HEError` naming the layer
(``where``): running out of levels is an error, never a garbage decryption.

Scales are kept exact rather than forced: a plaintext multiplier is encoded at the very
prime the next rescale divides by, so ``linear`` returns at its input's scale exactly;
polynomial terms get coefficient plaintexts chosen so every term lands on the same scale.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev as C

from .backend import Backend, HEError
from .pack import DiagonalPlan
from .params import Params


class OpCount:
    """Homomorphic operations performed (machine-independent cost)."""

    def __init__(self) -> None:
        self.rotations = self.pt_mults = self.ct_mults = self.rescales = 0

    def as_dict(self) -> dict:
        return dict(rotations=self.rotations, pt_mults=self.pt_mults,
                    ct_mults=self.ct_mults, rescales=self.rescales)


class Evaluator:
    """Evaluation with public keys only (the model owner's side).

    ``keygen`` is a callback used in single-process mode to make a missing Galois key on
    demand; a server built from a client's keys has none and refuses unknown rotations.
    """

    def __init__(self, params: Params, backend: Backend, relin, galois, steps,
                 keygen=None) -> None:
        self.params, self.be = params, backend
        self.relin, self.galois = relin, galois
        self.steps = set(steps)
        self._keygen = keygen
        self.ops = OpCount()

    # -- budget --------------------------------------------------------------------------
    def level(self, ct) -> int:
        return self.be.level(ct)

    def need(self, ct, levels: int, where: str) -> None:
        have = self.be.level(ct)
        if have < levels:
            raise HEError(f"{where}: needs {levels} more multiplicative level(s) but the "
                          f"ciphertext has {have} left (parameter set {self.params.name}, "
                          f"{self.params.levels} levels in all); use a deeper parameter set "
                          f"or lower-degree activations")

    def _rescale(self, ct, where: str):
        self.need(ct, 1, where)
        self.be.rescale_inplace(ct)
        self.ops.rescales += 1
        return ct

    def align(self, a, b):
        """Bring two ciphertexts to the same level (mod-switching the higher one down)."""
        la, lb = self.be.level(a), self.be.level(b)
        if la > lb:
            self.be.mod_switch_to(a, b)
        elif lb > la:
            self.be.mod_switch_to(b, a)

    # -- elementary ops ------------------------------------------------------------------
    def rotate(self, ct, step: int, where: str = "rotate"):
        step %= self.params.slots
        if step == 0:
            return self._copy(ct)
        if step not in self.steps:
            if self._keygen is None:
                raise HEError(f"{where}: no Galois key for rotation step {step}; the client "
                              f"generated keys for {sorted(self.steps)}")
            self.galois = self._keygen(self.steps | {step})
            self.steps.add(step)
        self.ops.rotations += 1
        return self.be.rotate(ct, step, self.galois)

    def _copy(self, ct):
        return self.be.copy(ct)

    def add(self, a, b, where: str = "add"):
        a, b = self._copy(a), self._copy(b)
        self.align(a, b)
        sa, sb = self.be.scale(a), self.be.scale(b)
        if abs(sa / sb - 1) > 1e-12:
            # Bring b onto a's scale exactly: multiply by 1 encoded at sa * q / sb.
            self.need(b, 1, where)
            one = self.be.encode(1.0, sa * float(self.be.prime_at(b)) / sb, b)
            b = self._rescale(self.be.mul_plain(b, one), where)
            self.ops.pt_mults += 1
            self.be.mod_switch_to(a, b)
            self.be.set_scale(b, sa)                   # equal up to float rounding
        return self.be.add(a, b)

    def add_plain(self, ct, values, where: str = "add"):
        out = self._copy(ct)
        self.be.add_plain_inplace(out, self.be.encode(values, self.be.scale(ct), ct))
        return out

    def mul_plain(self, ct, values, where: str = "mul"):
        """``ct * values`` (a scalar or a full slot vector): one level, scale unchanged."""
        self.need(ct, 1, where)
        if not np.any(np.asarray(values, dtype=np.float64)):
            raise HEError(f"{where}: multiplying by all zeros gives a transparent ciphertext "
                          f"(no encryption left); SEAL refuses it: compute the zero in plaintext")
        pt = self.be.encode(values, float(self.be.prime_at(ct)), ct)
        self.ops.pt_mults += 1
        return self._rescale(self.be.mul_plain(ct, pt), where)

    def mul(self, a, b, where: str = "mul"):
        a, b = self._copy(a), self._copy(b)
        self.align(a, b)
        self.need(a, 1, where)
        self.ops.ct_mults += 1
        return self._rescale(self.be.mul(a, b, self.relin), where)

    def square(self, ct, where: str = "square"):
        self.need(ct, 1, where)
        self.ops.ct_mults += 1
        return self._rescale(self.be.square(ct, self.relin), where)

    # -- vector layout: matrices -----------------------------------------------------------
    def encode_diagonals(self, plan: DiagonalPlan, level: int) -> dict:
        """Pre-encode a matrix's diagonals at the level its input will have (the model
        owner does this once per model, not per inference)."""
        if level < 1:
            raise HEError("no level left to encode a matrix at")
        q = float(self.be.prime_at_level(level))
        return {k: self.be.encode(v, q, level) for k, v in plan.diags.items()}

    def linear(self, ct, plan: DiagonalPlan, bias=None, encoded=None, where: str = "linear"):
        """``W x (+ b)`` on the vector layout; one level. ``encoded`` from
        `encode_diagonals` (built here if missing)."""
        self.need(ct, 1, where)
        if encoded is None:
            encoded = self.encode_diagonals(plan, self.be.level(ct))
        babies = {0: ct}
        for (_, j) in encoded:
            if j not in babies:
                babies[j] = self.rotate(ct, j, where)
        total = None
        for g in range(plan.g):
            inner = None
            for j in range(plan.b):
                pt = encoded.get((g, j))
                if pt is None:
                    continue
                term = self.be.mul_plain(babies[j], pt)
                self.ops.pt_mults += 1
                if inner is None:
                    inner = term
                else:
                    self.be.add_inplace(inner, term)
            if inner is None:
                continue
            if g:
                inner = self.rotate(inner, g * plan.b, where)
            if total is None:
                total = inner
            else:
                self.be.add_inplace(total, inner)
        if total is None:
            raise HEError(f"{where}: the weight matrix is all zeros")
        total = self._rescale(total, where)
        for k in plan.folds:
            self.be.add_inplace(total, self.rotate(total, k, where))
        if bias is not None:
            self.be.add_plain_inplace(total, self.be.encode(bias, self.be.scale(total), total))
        return total

    # -- batch layout: one ciphertext per feature -------------------------------------------
    def linear_batch(self, cts: list, w: np.ndarray, b, where: str = "linear") -> list:
        """``W x + b`` where ``cts[f]`` holds feature ``f`` of every sample; one level."""
        if len(cts) != w.shape[1]:
            raise HEError(f"{where}: {len(cts)} input features, the layer expects {w.shape[1]}")
        self.need(cts[0], 1, where)
        q = float(self.be.prime_at(cts[0]))
        cache: dict[float, object] = {}
        out = []
        for k in range(w.shape[0]):
            acc = None
            for f in np.flatnonzero(w[k]):
                wv = float(w[k, f])
                pt = cache.get(wv)
                if pt is None:
                    pt = cache[wv] = self.be.encode(wv, q, cts[0])
                term = self.be.mul_plain(cts[f], pt)
                self.ops.pt_mults += 1
                if acc is None:
                    acc = term
                else:
                    self.be.add_inplace(acc, term)
            if acc is None:
                # An all-zero row (a pruned unit): a product by exact zero would be a
                # transparent ciphertext, which SEAL refuses. Use the smallest weight that
                # encodes (2 / q): it adds at most 2 |x_0| / q (~1e-8 |x_0|) to this output.
                acc = self.be.mul_plain(cts[0], self.be.encode(2.0 / q, q, cts[0]))
            acc = self._rescale(acc, where)
            if b is not None and b[k] != 0:
                self.be.add_plain_inplace(acc, self.be.encode(float(b[k]),
                                                              self.be.scale(acc), acc))
            out.append(acc)
        return out

    # -- elementwise polynomials (both layouts) ----------------------------------------------
    def polyval(self, ct, coeffs, where: str = "polynomial"):
        """``sum_k coeffs[k] * x**k`` slot-wise in ``ceil(log2(d + 1))`` levels for degree
        ``d`` (1 for the plain square ``[0, 0, 1]``).

        Split ``p = p_lo + x^h p_hi`` (``h`` a power of two) recursively, so a degree-d
        polynomial costs about d/2 + log2 d ciphertext products. Every plaintext
        coefficient is encoded at the scale that makes its branch land on the target scale
        exactly, from the primes each rescale will divide by; branches at different levels
        then add with no scale error.
        """
        # A coefficient below one unit at the target scale encodes to zero: drop it.
        coeffs = [float(c) if abs(c) * self.params.scale >= 1 else 0.0 for c in coeffs]
        while len(coeffs) > 1 and coeffs[-1] == 0:
            coeffs.pop()
        d = len(coeffs) - 1
        if d == 2 and coeffs[:2] == [0.0, 0.0] and coeffs[2] == 1.0:
            return self.square(ct, where)
        return self.chebval(ct, C.poly2cheb(coeffs).tolist(), where)

    def chebval(self, ct, cheb, where: str = "polynomial"):
        """``sum_k cheb[k] * T_k(x)`` (Chebyshev basis: coefficients and every partial
        sum stay small for fits on [-1, 1]); ``ceil(log2(d + 1))`` levels."""
        coeffs = [float(c) if abs(c) * self.params.scale >= 1 else 0.0 for c in cheb]
        while len(coeffs) > 1 and coeffs[-1] == 0:
            coeffs.pop()
        d = len(coeffs) - 1
        if d == 0:
            raise HEError(f"{where}: a constant polynomial needs no ciphertext (and would be "
                          f"a transparent one): apply the constant in plaintext")
        self.need(ct, poly_depth(d), where)
        powers = {1: ct}

        def power(k):                                    # T_k for k a power of two
            if k not in powers:
                sq = self.square(power(k // 2), where)   # T_2k = 2 T_k^2 - 1
                self.be.add_inplace(sq, self.be.copy(sq))
                self.be.add_plain_inplace(sq, self.be.encode(-1.0, self.be.scale(sq), sq))
                powers[k] = sq
            return powers[k]

        out = self._poly(coeffs, power, self.params.scale, where)
        if coeffs[0]:
            self.be.add_plain_inplace(out, self.be.encode(coeffs[0], self.be.scale(out), out))
        return out

    def _poly(self, coeffs: list, power, target: float, where: str):  # Chebyshev basis
        """Ciphertext of the polynomial less its constant term, at scale ``target`` exactly
        (None if that is zero); the caller adds the constant."""
        d = len(coeffs) - 1
        while d > 0 and coeffs[d] == 0:
            d -= 1
        coeffs = coeffs[: d + 1]
        if d == 0:
            return None                                  # constant: the caller adds it
        if d == 1:
            x = power(1)
            self.need(x, 1, where)
            q = float(self.be.prime_at(x))
            out = self._rescale(self.be.mul_plain(x, self.be.encode(
                coeffs[1], target * q / self.be.scale(x), x)), where)
            self.ops.pt_mults += 1
        else:
            h = 1 << (d.bit_length() - 1)
            xh = power(h)
            # p = hi * T_h + lo (Chebyshev division: exact, no growth of coefficients)
            hi, lo = (list(map(float, v)) for v in C.chebdiv(coeffs, [0.0] * h + [1.0]))
            hi = [c if abs(c) * self.params.scale >= 1 else 0.0 for c in hi]
            lo = [c if abs(c) * self.params.scale >= 1 else 0.0 for c in lo]
            while len(hi) > 1 and hi[-1] == 0:
                hi.pop()
            l_hi = self.be.level(power(1)) - poly_depth(len(hi) - 1)
            l_mul = min(l_hi, self.be.level(xh)) if len(hi) > 1 else self.be.level(xh)
            if l_mul < 1:
                self.need(xh, 2, where)
            q = float(self.be.prime_at_level(l_mul))
            s_hi = target * q / self.be.scale(xh)
            top = self._poly(hi, power, s_hi, where)
            if top is None:                              # p_hi constant: c * x^h
                out = self._rescale(self.be.mul_plain(xh, self.be.encode(hi[0], s_hi, xh)),
                                    where)
                self.ops.pt_mults += 1
            else:
                if hi[0]:
                    self.be.add_plain_inplace(top, self.be.encode(hi[0], self.be.scale(top),
                                                                  top))
                out = self.mul(top, xh, where)
            rest = self._poly(lo, power, target, where)
            if rest is not None:
                self.align(out, rest)
                self.be.set_scale(rest, self.be.scale(out))   # both == target (float rounding)
                self.be.add_inplace(out, rest)
        self.be.set_scale(out, target)                   # equal to target up to float rounding
        return out


def poly_depth(d: int) -> int:
    """Levels `Evaluator.polyval` uses for a degree-``d`` polynomial."""
    return max(1, d.bit_length())
