"""torch.distributed helpers: gather features across ranks with gradients.

Gradient convention (that of ``torch.distributed.nn.functional.all_gather`` and of open_clip's
``gather_features(..., gather_with_grad=True)``): every rank computes the *same* loss on the
global batch, and the backward of the gather sums the gradients that all ranks send to each
rank's rows. Rank r therefore receives ``world_size * dL/dx_r`` for its local rows ``x_r``; DDP's
averaging of parameter gradients over ranks divides by ``world_size`` again, so after
``loss.backward()`` the parameters hold exactly the gradient a single process would get on the
global batch (parameters that live outside the gathered features, e.g. a learnable temperature,
get the same exact gradient on every rank). The loss value on each rank equals the
single-process loss on the global batch; do not rescale it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor


class WorldInfo(NamedTuple):
    """This process's place in the job: ``rank`` in ``[0, world_size)``."""

    rank: int
    world_size: int


def init_from_env(device: str = "auto") -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; under ``torchrun`` (``WORLD_SIZE > 1``) the process group is
    initialised first (NCCL when CUDA is used, gloo otherwise)."""
    import os

    if not dist.is_available():
        return 0, 1, 0
    if not dist.is_initialized():
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return 0, 1, 0
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return dist.get_rank(), dist.get_world_size(), local_rank


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_info() -> WorldInfo:
    """``(rank, world_size)``; ``(0, 1)`` when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return WorldInfo(dist.get_rank(), dist.get_world_size())
    return WorldInfo(0, 1)


def _gather_ints(values: list[int], device: torch.device) -> Tensor:
    """All ranks' small integer vectors, ``[world_size, len(values)]`` (no gradient)."""
    local = torch.tensor(values, dtype=torch.long, device=device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out)


class _AllGatherRows(torch.autograd.Function):
    """Concatenate every rank's rows (sizes may differ); backward sums the gradients over ranks."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int]) -> Tensor:  # type: ignore[override]
        rank = dist.get_rank()
        max_rows = max(sizes)
        padded = x.new_zeros((max_rows, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes = sizes
        ctx.rank = rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every backend has all_reduce (gloo lacks reduce_scatter)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (``[n_r, ...]`` on rank r) over all ranks in rank order, keeping gradients.

    Ranks may hold different numbers of rows (trailing dims must match). Without an initialised
    process group (or with one process) ``x`` is returned unchanged. See the module docstring for
    the gradient convention. Every rank must call this, and call ``backward`` through it.
    """
    if not is_distributed():
        return x
    meta = _gather_ints([x.shape[0], *x.shape[1:]], x.device)
    if not bool((meta[:, 1:] == meta[0, 1:]).all()):
        raise ValueError(f"all_gather_with_grad: all ranks must share the trailing shape, got {meta.tolist()}")
    return _AllGatherRows.apply(x, [int(n) for n in meta[:, 0].tolist()])


def gather_paired_first(tensors: list[Tensor], n_paired: int) -> list[Tensor]:
    """Gather each tensor over ranks with gradients and put all ranks' paired rows first.

    Each tensor on each rank holds ``n_paired`` paired rows first, then its unpaired rows. The
    result holds rank 0's paired rows, rank 1's paired rows, ..., then rank 0's unpaired rows,
    rank 1's unpaired rows, ...; so its first ``world_size * n_paired`` rows are the global pairs.
    The same permutation is applied to every tensor in ``tensors`` (those with the same row count
    as one another stay row-aligned, e.g. a feature matrix and its second view). Raises a
    ``ValueError`` on every rank when ranks disagree on ``n_paired``. Without a process group,
    returns ``tensors`` unchanged.
    """
    if not is_distributed():
        return list(tensors)
    device = tensors[0].device
    meta = _gather_ints([int(n_paired)] + [t.shape[0] for t in tensors], device)  # [world, 1 + len]
    paired_counts = meta[:, 0].tolist()
    if len(set(paired_counts)) != 1:
        raise ValueError(f"every rank must hold the same n_paired, got {paired_counts} (rank order)")
    out = []
    for k, t in enumerate(tensors):
        sizes = [int(s) for s in meta[:, 1 + k].tolist()]
        if min(sizes) < n_paired:
            raise ValueError(f"gather_paired_first: a rank holds fewer rows ({min(sizes)}) than n_paired ({n_paired})")
        full = all_gather_with_grad(t)
        offsets = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        paired = [torch.arange(o, o + n_paired) for o in offsets]
        unpaired = [torch.arange(o + n_paired, o + s) for o, s in zip(offsets, sizes)]
        order = torch.cat(paired + unpaired).to(full.device)
        out.append(full.index_select(0, order))
    return out
