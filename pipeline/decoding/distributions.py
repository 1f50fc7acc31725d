"""Float32 next-token distribution math: mixing, entropy, divergences."""
from __future__ import annotations

import torch


def mix(p_student: torch.Tensor, p_teacher: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """p_s + α·(p_t − p_s); α may be a scalar or one value per row ([B] or [B, 1])."""
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        alpha = alpha.view(-1, 1)
    return p_student + alpha * (p_teacher - p_student)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Natural-log entropy per row."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1)


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) per row, natural log."""
    return (p * (torch.log(p.clamp_min(1e-30)) - torch.log(q.clamp_min(1e-30)))).sum(dim=-1)


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence per row, natural log (bounded by ln 2)."""
    m = 0.5 * (p + q)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def at_bfloat16(p: torch.Tensor) -> torch.Tensor:
    """Probabilities rounded to bfloat16 and renormalized (float32): the same values whether
    they were rounded here or crossed the wire as bfloat16 already (rounding is idempotent)."""
    rounded = p.to(torch.bfloat16).float()
    return rounded / rounded.sum(dim=-1, keepdim=True)


def certified_mix_argmax(p_s: torch.Tensor, topk_probs: torch.Tensor, topk_ids: torch.Tensor, alpha: torch.Tensor,
                         margin: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax of p_s + α(p_t − p_s) knowing only the teacher's k largest probabilities.

    p_s [R, V] is the student's full row, topk_* [R, k] the teacher's largest probabilities
    (largest first) and their ids, α [R]. Inside the teacher's top-k the mixed value is
    exact. Outside it p_t(x) lies in [0, b] with b = p_t⁽ᵏ⁾, and the mixed value is linear in
    p_t(x), so it lies between its values at p_t(x) = 0 and at p_t(x) = b (for 0 ≤ α ≤ 1:
    (1−α)p_s(x) ... (1−α)p_s(x) + α·b; for α > 1 the top grows with α·b; for α < 0 the order
    flips and low student mass outside the top-k only helps). The token with the highest
    lower end is the argmax when that lower end beats every other token's upper end by
    more than `margin`; returns it and whether that holds (where not, the caller needs the
    full row: ties included, so the lowest id wins there as in argmax over the full row).
    """
    alpha = alpha.view(-1, 1).to(p_s.dtype)
    b = topk_probs[:, -1:].to(p_s.dtype)
    at_zero, at_b = p_s + alpha * (0.0 - p_s), p_s + alpha * (b - p_s)
    ps_k = p_s.gather(1, topk_ids)
    exact = ps_k + alpha * (topk_probs.to(p_s.dtype) - ps_k)  # as mix() computes it over the full row
    lo = torch.minimum(at_zero, at_b).scatter(1, topk_ids, exact)
    hi = torch.maximum(at_zero, at_b).scatter(1, topk_ids, exact)
    best = lo.max(dim=1)
    others = hi.scatter(1, best.indices.view(-1, 1), float("-inf")).max(dim=1).values
    return best.indices, best.values > others + margin
