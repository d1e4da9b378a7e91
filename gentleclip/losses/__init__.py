"""Loss functions of gentleclip, one per module, and the weighted objective that combines them."""
from __future__ import annotations

from gentleclip.losses import terms as _terms  # noqa: F401  (registers the built-in terms)
from gentleclip.losses.clip import CLIPLoss
from gentleclip.losses.gap import CentroidUniformityLoss, PairAlignmentLoss
from gentleclip.losses.mkmmd import MKMMDLoss
from gentleclip.losses.ntxent import NTXentLoss
from gentleclip.losses.objective import (
    Objective,
    ObjectiveConfig,
    Option,
    Term,
    TermAdapter,
    TermInputs,
    get_term,
    register_term,
    registered_terms,
)
from gentleclip.losses.pseudo_nn import PseudoNNLoss, nearest_neighbour_pairs
from gentleclip.losses.sclip import (
    SClipCaptionLoss,
    SClipKeywordLoss,
    caption_pseudo_labels,
    nearest_paired_rows,
    sinkhorn,
)
from gentleclip.losses.sdd import SDDLoss, squared_distances, total_variance

__all__ = [
    "CLIPLoss",
    "SDDLoss",
    "MKMMDLoss",
    "NTXentLoss",
    "PairAlignmentLoss",
    "CentroidUniformityLoss",
    "SClipCaptionLoss",
    "SClipKeywordLoss",
    "PseudoNNLoss",
    "sinkhorn",
    "caption_pseudo_labels",
    "nearest_paired_rows",
    "nearest_neighbour_pairs",
    "Objective",
    "ObjectiveConfig",
    "Option",
    "Term",
    "TermAdapter",
    "get_term",
    "TermInputs",
    "register_term",
    "registered_terms",
    "squared_distances",
    "total_variance",
]
