"""Float32 next-token distribution math: mixing, entropy, divergences."""
from __future__ import annotations

import torch


def probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1)


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


def certified_mix_argmax(p_s: torch.Tensor, topk_probs: torch.Tensor, topk_ids: torch.Tensor, alpha: torch.Tensor,
                         margin: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax of p_s + α(p_t − p_s) knowing only the teacher's k largest probabilities.

    p_s [R, V] is the student's full row, topk_* [R, k] the teacher's largest probabilities
    (largest first) and their ids, α [R]. Inside the teacher's top-k the mixed value is
    exact. Outside it p_t(x) is unknown but lies in [0, p_t⁽ᵏ⁾], so the mixed value is at
    most p_s(x) + α(b − p_s(x)) with b = p_t⁽ᵏ⁾ for α > 0 and b = 0 for α ≤ 0 (for
    0 ≤ α ≤ 1 that is (1−α)p_s(x) + α·p_t⁽ᵏ⁾). Returns the top-k candidate with the highest
    mixed value (lowest id on ties, as argmax over the full row) and whether it beats that
    bound for every other token by more than `margin`: where not, the caller needs the full row.
    """
    alpha = alpha.view(-1, 1).to(p_s.dtype)
    ps_k = p_s.gather(1, topk_ids)
    exact = ps_k + alpha * (topk_probs - ps_k)
    best = exact.max(dim=1, keepdim=True).values
    # among tied top-k candidates the smallest token id wins, as in argmax over the full row
    tied_ids = torch.where(exact == best, topk_ids, torch.full_like(topk_ids, p_s.shape[1]))
    token = tied_ids.min(dim=1).values
    b = torch.where(alpha > 0, topk_probs[:, -1:], torch.zeros_like(alpha))
    bound = p_s + alpha * (b - p_s)
    bound = bound.scatter(1, topk_ids, float("-inf"))
    ok = best.squeeze(1) > bound.max(dim=1).values + margin
    return token, ok
