"""Scoring a run against ground truth the user has: J / F / J&F for mask folders (DAVIS 2017 definitions) and
HOTA / IDF1 / MOTA / ID switches for MOTS or MOTChallenge track files (TrackEval).

The metric code needs no model; heavy pieces (TrackEval) are imported only when tracks are scored.
"""

from __future__ import annotations

from .davis import boundary_map, f_measure, jaccard, statistics
from .masks import MATCH_MODES, MaskReport, ObjectScore, evaluate_masks
from .tracks import evaluate_tracks

__all__ = ["MATCH_MODES", "MaskReport", "ObjectScore", "boundary_map", "evaluate_masks", "evaluate_tracks",
           "f_measure", "jaccard", "statistics"]
