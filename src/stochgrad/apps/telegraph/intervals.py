r"""95 % profile-likelihood intervals of burst frequency and burst size, all genes at once.

:func:`profile_intervals` finds both ends of both intervals of every gene as one batch of
root-finding problems on the profile likelihood, with exact Hessians (see
:func:`~stochgrad.apps.telegraph.likelihood.histogram_nll`), and tells which ends run flat to
the parameter box (structural non-identifiability). Used by
:func:`~stochgrad.apps.telegraph.fit.fit_genes`. Reference: Venzon & Moolgavkar, A method for
computing profile-likelihood-based confidence intervals, *Appl. Statist.* 37, 87-94 (1988).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from stochgrad.apps.telegraph.likelihood import DTYPE

__all__ = ["profile_intervals"]

_CHI2_95 = 3.841458820694124  # chi-square(1) 95 % quantile


def profile_intervals(
    hist: Tensor,
    u_hat: Tensor,
    f_hat: Tensor,
    g_hat: Tensor,
    H: Tensor,
    fgh: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]],
    lo_u: Tensor,
    hi_u: Tensor,
    *,
    max_iter: int = 40,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""95 % profile-likelihood intervals of log burst frequency and log burst size.

    For each quantity :math:`\psi` (:math:`\log k_{on}` or :math:`\log k_{syn}/k_{off}`) and
    side, the endpoint is where the profile :math:`F_p(\psi)` (the negative log-likelihood
    minimised over two nuisance coordinates) reaches :math:`\hat F + 3.84/2`. The nuisances are
    :math:`(\log k_{off}, \log k_{syn})` for burst frequency and :math:`(\log k_{on}, \log
    k_{off})` for burst size, so that the box (``lo_u``, ``hi_u``) bounds each of them simply
    at fixed :math:`\psi`. All quantities, sides and genes iterate as one batch with exact
    Hessians (``fgh``), one evaluation per row and iteration, in the manner of Venzon &
    Moolgavkar (*Appl. Statist.* 37, 87-94, 1988) but safeguarded:

    - while the nuisances are off their conditional minimum, a Newton step in them alone,
      shortened where it would leave the box, kept if the value falls (Armijo), else halved;
    - near it (Newton decrement below the distance to the target), :math:`\psi` moves to the
      target's crossing by the quadratic model of :math:`F_p` (the Schur complement of the
      nuisance block), or by a Newton step on its slope where the model is not convex, and the
      nuisances follow by their conditional response, projected on the box;
    - points with the nuisances on their minimum (decrement below 1e-4) bracket the endpoint;
      a move that leaves the bracket or that the model does not support goes outwards (at most
      3 in log space) from a point inside, or halfway back from a point outside, restarting
      from the outermost point inside (so that the nuisances stay on its branch of the
      profile; near-Poisson genes have several).

    The first step from the maximum is the Wald endpoint. A side stops when its profile is
    within 1e-3 of the target (the deviance within 0.002 of 3.84; the endpoint within a few
    thousandths of a standard error), or at the end of the quantity's feasible range implied by
    the box with the profile still below the target. Beyond a bound a nuisance meets a steep
    quadratic wall :math:`10^3 d^2` (the data are evaluated where the nuisance is: clamping it
    instead would fake a flat profile), whose curvature the step's model includes once the
    nuisance presses on the bound.

    A side is *flat to the box* (structurally non-identifiable) when its deviance stays below
    3.84 out to the end of the feasible range (reported as 0 or ``inf``), or when the wall
    rather than the data supplies most of the deviance at the endpoint: the likelihood runs
    along a ridge out of the parameter space, as in the Poisson limit :math:`k_{on} \gg
    k_{off}` (burst size :math:`\to \infty` with :math:`k_{off} \to 0`).

    Args:
        hist: ``[G, n_max + 1]`` count histograms of the genes.
        u_hat: ``[G, 3]`` the maximum in log-parameters.
        f_hat: ``[G]`` the negative log-likelihood there.
        g_hat: ``[G, 3]`` its gradient there.
        H: ``[G, 3, 3]`` its Hessian there.
        fgh: ``fgh(u, hist)``: negative log-likelihood, gradient and Hessian in
            log-parameters of histograms ``hist`` at ``u`` (one row each).
        lo_u: ``[3]`` the lower corner of the box in log-parameters.
        hi_u: ``[3]`` its upper corner.
        max_iter: iterations at most (a side not finished by then keeps its last iterate).

    Returns:
        ``[G, 2, 2]`` endpoints (quantity, side) in log space, ``[G, 2, 2]`` bounded flags and
        ``[G, 2, 2]`` flat-to-the-box flags.

    >>> from stochgrad.apps.telegraph import fit_genes, sample_stationary
    >>> x = sample_stationary(0.5, 3.0, 40.0, 600, generator=torch.Generator().manual_seed(9))
    >>> fit = fit_genes(x[None])  # its intervals come from here
    >>> bool(fit.bf_low[0] < fit.burst_frequency[0] < fit.bf_high[0])
    True
    """
    G = u_hat.shape[0]
    # u = B z, z = (psi, nuisance 1, nuisance 2): bf (u0 | u1, u2), bs (u2 - u1 | u0, u1)
    B = torch.tensor(
        [[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]], [[0.0, 1, 0], [0, 0, 1], [1, 0, 1]]], dtype=DTYPE
    )
    psi_lo = torch.stack((lo_u[0], lo_u[2] - hi_u[1]))  # feasible log bf, log bs
    psi_hi = torch.stack((hi_u[0], hi_u[2] - lo_u[1]))
    q = torch.arange(2).repeat_interleave(2 * G)  # one row per (quantity, side, gene)
    side = torch.tensor([-1.0, 1.0], dtype=DTYPE).repeat_interleave(G).repeat(2)
    gene = torch.arange(G).repeat(4)
    Bq = B[q]
    z = torch.linalg.solve(Bq, u_hat[gene][..., None])[..., 0]
    psi0 = z[:, 0].clone()
    target = f_hat[gene] + _CHI2_95 / 2
    t_max = torch.where(side > 0, psi_hi[q] - psi0, psi0 - psi_lo[q]).clamp_min(0.0)
    t_in = torch.zeros(4 * G, dtype=DTYPE)  # distances from the estimate bracketing the end
    t_out = torch.full((4 * G,), math.inf, dtype=DTYPE)
    scale = torch.ones(4 * G, dtype=DTYPE)  # nuisance step length (halved on failure)

    def box(zz: Tensor, qq: Tensor) -> tuple[Tensor, Tensor]:
        """Bounds of the nuisances at the rows' psi."""
        ps = zz[:, 0]
        bs = qq == 1
        lo = torch.stack(
            (
                torch.where(bs, lo_u[0], lo_u[1]),
                torch.where(bs, torch.maximum(lo_u[1], lo_u[2] - ps), lo_u[2]),
            ),
            1,
        )
        hi = torch.stack(
            (
                torch.where(bs, hi_u[0], hi_u[1]),
                torch.where(bs, torch.minimum(hi_u[1], hi_u[2] - ps), hi_u[2]),
            ),
            1,
        )
        return lo, hi

    def fgh_wall(zz: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b = Bq[idx]
        u = (b @ zz[..., None])[..., 0]
        f, g, Hu = fgh(u, hist[gene[idx]])
        out = u - torch.minimum(torch.maximum(u, lo_u), hi_u)
        wall = 1e3 * out.square().sum(1)
        Hu = Hu + torch.diag_embed(2e3 * (out != 0).to(DTYPE))
        bt = b.transpose(1, 2)
        gz, Hz = (bt @ (g + 2e3 * out)[..., None])[..., 0], bt @ Hu @ b
        # a nuisance on its bound, pressed outwards: the wall's curvature in the model
        lo, hi = box(zz, q[idx])
        nz = zz[:, 1:]
        pressed = ((nz <= lo + 1e-9) & (gz[:, 1:] > 0)) | ((nz >= hi - 1e-9) & (gz[:, 1:] < 0))
        Hz[:, 1:, 1:] += torch.diag_embed(2e3 * (pressed & (out == 0).all(1, True)).to(DTYPE))
        return f + wall, gz, Hz, wall

    F = f_hat[gene].clone()
    g = (Bq.transpose(1, 2) @ g_hat[gene][..., None])[..., 0]
    Hz = Bq.transpose(1, 2) @ H[gene] @ Bq
    wall = torch.zeros(4 * G, dtype=DTYPE)
    done = torch.zeros(4 * G, dtype=torch.bool)
    z_in = z.clone()
    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if act.numel() == 0:
            break
        sa, Ha, ga, za, Fa, tg = side[act], Hz[act], g[act], z[act], F[act], target[act]
        gq, gn, Hqq, Hnq = ga[:, 0], ga[:, 1:], Ha[:, 0, 0], Ha[:, 1:, 0]
        Hnn = Ha[:, 1:, 1:].clone()
        lo, hi = box(za, q[act])
        on_lo, on_hi = za[:, 1:] <= lo + 1e-9, za[:, 1:] >= hi - 1e-9
        for _ in range(3):
            w, V = torch.linalg.eigh(Hnn)
            w = w.abs()
            w = torch.maximum(w, 1e-9 * w.amax(1, keepdim=True)).clamp_min(1e-12)
            K = V @ (V.transpose(1, 2) / w[..., None])  # modified inverse of the nuisance block
            Kg = (K @ gn[..., None])[..., 0]
            # a nuisance on its bound whose step leaves the box meets the wall's curvature
            out = ((on_lo & (Kg > 0)) | (on_hi & (Kg < 0))) & (Hnn.diagonal(0, 1, 2) < 1e3)
            if not bool(out.any()):
                break
            Hnn = Hnn + torch.diag_embed(2e3 * out.to(DTYPE))
        Kh = (K @ Hnq[..., None])[..., 0]
        dec = (gn * Kg).sum(1)
        ta = sa * (za[:, 0] - psi0[act])
        # on the profile: F = F_p(psi); near it, F - dec/2 estimates F_p well enough to tell
        # on which side of the target psi lies, and psi moves on with the nuisances' step
        converged = dec < 1e-4
        F0 = Fa - dec / 2
        on_profile = converged | (dec < (F0 - tg).abs())
        below = F0 < tg
        # the bracket (an exact value overrides an estimate it contradicts); the nuisances of
        # the outermost point inside are kept to restart from on the same branch
        lo_b, hi_b = t_in[act], t_out[act]
        hi_b = torch.where(converged & below & (ta >= hi_b - 1e-6), math.inf, hi_b)
        inner = converged & below & (ta >= lo_b)
        z_in[act[inner]] = za[inner]
        lo_b = torch.where(inner, ta, lo_b)
        hi_b = torch.where(converged & ~below, torch.minimum(hi_b, ta), hi_b)
        t_in[act], t_out[act] = lo_b, hi_b
        fin = converged & (((F0 - tg).abs() < 1e-3) | (below & (ta >= t_max[act] - 1e-9)))
        done[act[fin]] = True
        # the profile's model outwards, F0 + S dt + C dt^2 / 2 (dt: the change of t): its
        # crossing of the target where convex, else a Newton step on its slope; where neither
        # is usable or it leaves the bracket, outwards from a point inside, or halfway back
        # from a point outside (restarting from the outermost point inside, so that the
        # nuisances stay on its branch of the profile)
        S = sa * (gq - (Hnq * Kg).sum(1))
        C = Hqq - (Hnq * Kh).sum(1)
        disc = S.square() - 2 * C * (F0 - tg)
        quad = (C > 0) & (disc >= 0)
        dt = torch.where(quad, (disc.clamp_min(0).sqrt() - S) / C.clamp_min(1e-300), math.nan)
        dt = torch.where(~quad & (S > 0), (tg - F0) / S.clamp_min(1e-300), dt)
        t_new = ta + dt
        ok = (t_new > lo_b) & (t_new < hi_b) & (dt.abs() <= 3.0)  # False where NaN
        grow = ta + torch.maximum(ta, torch.tensor(0.5, dtype=DTYPE)).clamp(max=3.0)
        back = (lo_b + ta) / 2
        fallback = torch.where(
            below, torch.where(torch.isfinite(hi_b), (ta + hi_b) / 2, grow), back
        )
        t_new = torch.where(ok, t_new, fallback).clamp(max=t_max[act])
        restart = on_profile & ~ok & ~below
        t_from = torch.where(restart, sa * (z_in[act, 0] - psi0[act]), ta)
        # psi moves when it is on the profile and not yet at the target; else the nuisances
        # take a Newton step (the last ones before a side finishes)
        prof = on_profile & ((F0 - tg).abs() >= 1e-3) & ((t_new - t_from).abs() > 1e-12)
        restart = restart & prof
        za = torch.where(restart[:, None], z_in[act], za)
        ta = torch.where(restart, t_from, ta)
        d_psi = torch.where(prof, sa * (t_new - ta), 0.0)
        # the nuisances: conditional response to the move of psi, or a Newton step at fixed psi
        dn = -(Kg + Kh * d_psi[:, None])
        dn = torch.where(restart[:, None], 0.0, dn)
        dn = dn * (3.0 / dn.abs().amax(1, keepdim=True).clamp_min(3.0))
        keep = ~fin
        act, d_psi, dn, prof = act[keep], d_psi[keep], dn[keep], prof[keep]
        if act.numel() == 0:
            break
        za, gn = za[keep], gn[keep]
        new = za.clone()
        new[:, 0] += d_psi
        lo, hi = box(new, q[act])
        nz = za[:, 1:]
        # a nuisance step stops where it would leave the box (the wall is met on the next);
        # after a move of psi the nuisances inside the box are projected on it
        inside = (nz > lo + 1e-9) & (nz < hi - 1e-9)
        room = torch.where(dn > 0, (hi - nz) / dn, (lo - nz) / dn)
        room = torch.where(inside & (dn != 0), room, math.inf).amin(1).clamp(0.0, 1.0)
        step_n = dn * (scale[act] * room)[:, None]
        moved = torch.where(inside, torch.minimum(torch.maximum(nz + dn, lo), hi), nz + dn)
        new[:, 1:] = torch.where(prof[:, None], moved, nz + step_n)
        Fn, gnew, Hnew, wn = fgh_wall(new, act)
        slope = (gn * step_n).sum(1)
        good = prof | (torch.isfinite(Fn) & (Fn <= F[act] + 1e-4 * slope + 1e-11 * F[act].abs()))
        take = act[good]
        z[take], F[take], g[take], Hz[take], wall[take] = (
            new[good],
            Fn[good],
            gnew[good],
            Hnew[good],
            wn[good],
        )
        scale[take] = 1.0
        fail = act[~good]
        scale[fail] = scale[fail] / 2
        done[fail[scale[fail] < 1e-6]] = True
    psi = z[:, 0]
    unbounded = (side * (psi - psi0) >= t_max - 1e-9) & (F < target)
    # the wall, not the data, made most of the deviance: flat to the box
    walled = wall > (F - wall - f_hat[gene]).clamp_min(0.0)
    shape = lambda t: t.reshape(2, 2, G).permute(2, 0, 1)  # noqa: E731
    return shape(psi), shape(~unbounded), shape(unbounded | walled)
