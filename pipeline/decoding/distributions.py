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
