"""The built-in terms of the objective, each registered once with what it reads and the options it takes.

Each registration names the loss module (the plain formula), the rows and inputs of the batch the
term reads (:data:`~gentleclip.losses.objective.ROWS`, :data:`~gentleclip.losses.objective.INPUTS`),
its options with their defaults and checks, and the call that feeds it from
:class:`~gentleclip.losses.objective.TermInputs`.
"""
from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from gentleclip.losses.clip import CLIPLoss
from gentleclip.losses.gap import CentroidUniformityLoss, PairAlignmentLoss
from gentleclip.losses.mkmmd import MKMMDLoss
from gentleclip.losses.ntxent import NTXentLoss
from gentleclip.losses.objective import (
    ObjectiveConfig,
    Option,
    Term,
    TermAdapter,
    TermInputs,
    need_view,
    register_term,
)
from gentleclip.losses.pseudo_nn import PseudoNNLoss
from gentleclip.losses.sclip import SClipCaptionLoss, SClipKeywordLoss
from gentleclip.losses.sdd import SDDLoss
from gentleclip.losses.structure import StructureLoss

__all__: list[str] = []


# ---------------------------------------------------------------------------- option checks
def positive(value: Any) -> str | None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    return None if ok else "a positive number"


def optional_positive(value: Any) -> str | None:
    return None if value is None or positive(value) is None else "None or a positive number"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def integer_at_least_1(value: Any) -> str | None:
    return None if not isinstance(value, bool) and isinstance(value, int) and value >= 1 else "an integer >= 1"


def one_of(*choices: str):
    def check(value: Any) -> str | None:
        return None if value in choices else f"one of {', '.join(map(repr, choices))}"

    return check


def optional_bool(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "None, True or False"


def sdd_bandwidth(value: Any) -> str | None:
    return None if value == "variance" or (not isinstance(value, str) and positive(value) is None) \
        else "'variance' or a positive float"


def cosine_or_none(value: Any) -> str | None:
    ok = value is None or (not isinstance(value, bool) and isinstance(value, (int, float)) and -1.0 <= value <= 1.0)
    return None if ok else "None or a cosine in [-1, 1]"


TEMPERATURE = Option(0.05, positive, "softmax temperature of the contrastive terms (CLIP, S-CLIP, pseudo-pairs)")
FUSED = Option(None, optional_bool, "SDD / MK-MMD on the fused CPU kernels (True), plain autograd (False), or where "
               "they pay (None: on the CPU; see gentleclip.losses._fused)")


# ---------------------------------------------------------------------------- CLIP
def _clip_temperature_range(c: ObjectiveConfig) -> str | None:
    if not c.min_temperature <= c.temperature <= c.max_temperature:
        return (f"temperature must lie in [min_temperature, max_temperature] = "
                f"[{c.min_temperature}, {c.max_temperature}], got {c.temperature}")
    return None


def _clip_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.za, b.zb, b.n_paired)


def _build_clip(c: ObjectiveConfig) -> nn.Module:
    return TermAdapter(CLIPLoss(c.temperature, c.learnable_temperature, c.min_temperature, c.max_temperature,
                                unpaired_negatives=c.clip_unpaired_negatives), _clip_call)


register_term(Term(
    "clip", _build_clip, reads=("paired",),
    options={"temperature": TEMPERATURE,
             "learnable_temperature": Option(False, boolean, "learn the CLIP temperature"),
             "min_temperature": Option(0.01, positive, "lower bound of a learnt temperature"),
             "max_temperature": Option(1.0, positive, "upper bound of a learnt temperature"),
             "clip_unpaired_negatives": Option(True, boolean, "the unpaired rows of the batch are extra negatives")},
    check=_clip_temperature_range,
    doc="symmetric InfoNCE on the paired rows (CLIPLoss); unpaired rows in the batch as extra negatives"))


# ---------------------------------------------------------------------------- set-level terms (Gentle-CLIP)
def _sets_d2_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.za, b.zb, d2=b.joint_d2)  # the joint distance matrix is shared by SDD and MMD


register_term(Term(
    "sdd", lambda c: TermAdapter(SDDLoss(c.sdd_bandwidth, c.sdd_normalize, spread=c.sdd_spread,
                                         fused=c.fused_kernels), _sets_d2_call),
    reads=("paired", "unpaired_a", "unpaired_b"),
    options={"sdd_bandwidth": Option("variance", sdd_bandwidth, "kernel bandwidth: 'variance' of each set or a float"),
             "sdd_normalize": Option(True, boolean, "normalise the densities over the evaluation points"),
             "sdd_spread": Option("variance", one_of("variance", "range", "none"), "the spread that divides D"),
             "fused_kernels": FUSED},
    doc="semantic density distribution loss between all A rows and all B rows (SDDLoss)"))

register_term(Term(
    "mmd", lambda c: TermAdapter(MKMMDLoss(c.mmd_kernel_mul, c.mmd_kernel_num, c.mmd_bandwidth, c.mmd_unbiased,
                                           fused=c.fused_kernels), _sets_d2_call),
    reads=("paired", "unpaired_a", "unpaired_b"),
    options={"mmd_kernel_num": Option(5, integer_at_least_1, "number of Gaussian kernels"),
             "mmd_kernel_mul": Option(2.0, positive, "ratio of the bandwidth ladder"),
             "mmd_bandwidth": Option(None, optional_positive, "centre bandwidth (None: the median heuristic)"),
             "mmd_unbiased": Option(False, boolean, "the unbiased estimator"),
             "fused_kernels": FUSED},
    doc="multi-kernel MMD between all A rows and all B rows (MKMMDLoss)"))


# ---------------------------------------------------------------------------- unimodal self-supervision
def _ssl_a_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.za, need_view(b.za2, "ssl_a", "za2"))


def _ssl_b_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.zb, need_view(b.zb2, "ssl_b", "zb2"))


SSL_TEMPERATURE = Option(0.05, positive, "temperature of the self-supervised NT-Xent terms")
register_term(Term("ssl_a", lambda c: TermAdapter(NTXentLoss(c.ssl_temperature), _ssl_a_call),
                   reads=("paired", "unpaired_a", "views_a"), options={"ssl_temperature": SSL_TEMPERATURE},
                   doc="NT-Xent between two views of every A row (NTXentLoss)"))
register_term(Term("ssl_b", lambda c: TermAdapter(NTXentLoss(c.ssl_temperature), _ssl_b_call),
                   reads=("paired", "unpaired_b", "views_b"), options={"ssl_temperature": SSL_TEMPERATURE},
                   doc="NT-Xent between two views of every B row (NTXentLoss)"))


# ---------------------------------------------------------------------------- modality gap
def _pairs_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.paired_a, b.paired_b)


register_term(Term("align", lambda c: TermAdapter(PairAlignmentLoss(), _pairs_call), reads=("paired",),
                   doc="mean squared distance of the true pairs (PairAlignmentLoss)"))
register_term(Term("uniformity", lambda c: TermAdapter(CentroidUniformityLoss(c.uniformity_t), _pairs_call),
                   reads=("paired",), options={"uniformity_t": Option(2.0, positive, "uniformity scale t")},
                   doc="uniformity of the pair centroids (CentroidUniformityLoss)"))


# ---------------------------------------------------------------------------- S-CLIP
def _sclip_caption_a_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.unpaired_a, b.paired_b, za_paired=b.paired_a)  # OT cost against the paired A rows


def _sclip_caption_b_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.unpaired_a, b.paired_b)  # OT cost against the paired B rows


def _build_sclip_caption(c: ObjectiveConfig) -> nn.Module:
    call = _sclip_caption_a_call if c.sclip_support == "a" else _sclip_caption_b_call
    return TermAdapter(SClipCaptionLoss(c.temperature, c.sclip_ot_epsilon, c.sclip_ot_iter), call)


def _sclip_keyword_call(loss: nn.Module, b: TermInputs) -> Tensor:
    if b.paired_keywords is None or b.z_keywords is None:
        raise ValueError("Objective: the 'sclip_keyword' term has a positive weight but no keywords were given; "
                         "pass paired_keywords= and z_keywords= (see gentleclip.keywords) or set sclip_keyword=0")
    return loss(b.unpaired_a, b.paired_a, b.paired_keywords, b.z_keywords)


register_term(Term(
    "sclip_caption", _build_sclip_caption, reads=("paired", "unpaired_a"),
    options={"temperature": TEMPERATURE,
             "sclip_ot_epsilon": Option(None, optional_positive, "Sinkhorn regularisation (None: the temperature)"),
             "sclip_ot_iter": Option(10, integer_at_least_1, "Sinkhorn iterations"),
             "sclip_support": Option("a", one_of("a", "b"), "OT cost against the paired A rows ('a') or B rows")},
    doc="S-CLIP caption-level soft pseudo-labels for the unpaired A rows (SClipCaptionLoss)"))
register_term(Term(
    "sclip_keyword", lambda c: TermAdapter(SClipKeywordLoss(c.temperature), _sclip_keyword_call),
    reads=("paired", "unpaired_a", "keywords"), options={"temperature": TEMPERATURE},
    doc="S-CLIP keyword-level partial-label pseudo-labels for the unpaired A rows (SClipKeywordLoss)"))


# ---------------------------------------------------------------------------- hard pseudo-pairs
def _unpaired_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.unpaired_a, b.unpaired_b)


register_term(Term(
    "pseudo_nn", lambda c: TermAdapter(PseudoNNLoss(c.temperature, c.pseudo_threshold, c.pseudo_mutual),
                                       _unpaired_call),
    reads=("unpaired_a", "unpaired_b"),
    options={"temperature": TEMPERATURE,
             "pseudo_threshold": Option(None, cosine_or_none, "minimum cosine of a kept pseudo-pair"),
             "pseudo_mutual": Option(False, boolean, "keep mutual nearest neighbours only")},
    doc="InfoNCE on hard nearest-neighbour pseudo-pairs between the unpaired rows (PseudoNNLoss)"))


# ---------------------------------------------------------------------------- STRUCTURE
class _BothModalities(nn.Module):
    """STRUCTURE on side A and on side B, averaged."""

    def __init__(self, loss: StructureLoss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, b: TermInputs) -> Tensor:
        """The mean of the regulariser of both sides over the rows of the batch."""
        assert b.xa is not None and b.xb is not None  # checked by the objective
        return 0.5 * (self.loss(b.xa, b.za) + self.loss(b.xb, b.zb))


register_term(Term(
    "structure", lambda c: _BothModalities(StructureLoss(c.structure_temperature, c.structure_levels)),
    reads=("paired", "features_a", "features_b"),
    options={"structure_temperature": Option(0.1, positive, "temperature of the neighbour distributions"),
             "structure_levels": Option(3, integer_at_least_1, "random-walk scales compared")},
    doc="STRUCTURE: multi-scale neighbourhoods of the frozen features kept in the joint space (StructureLoss)"))
