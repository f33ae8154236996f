"""Pure-Python meta-analysis engine reproducing metafor 3.8-1 (numpy/scipy only, no I/O).

Ratio measures (OR, RR, PETO) are on the log scale everywhere; back-transform only for display.
"""

from .bias import RegtestResult, TrimfillResult, regtest, trimfill
from .effect_sizes import EffectSizes, escalc, hedges_correction
from .estimators import ESTIMATORS, ConvergenceError, Control, Tau2Fit
from .fixed import FixedResult, rma_mh, rma_peto
from .heterogeneity import Tau2CI, confint_tau2
from .rma import Prediction, RMAResult, rma
from .sensitivity import Sequence, cumul, leave1out
from .subgroups import CommonTau2Subgroups, SeparateTau2Subgroups, subgroup_common, subgroup_separate

__all__ = [
    "escalc", "EffectSizes", "hedges_correction",
    "rma", "RMAResult", "Prediction", "ESTIMATORS", "Tau2Fit", "ConvergenceError", "Control",
    "rma_mh", "rma_peto", "FixedResult",
    "confint_tau2", "Tau2CI",
    "regtest", "RegtestResult", "trimfill", "TrimfillResult",
    "leave1out", "cumul", "Sequence",
    "subgroup_common", "subgroup_separate", "CommonTau2Subgroups", "SeparateTau2Subgroups",
]
