"""Tracking logic that needs no model: keyframe policy, keyframe association, track lifecycle.

The pipeline drives these per frame: propagate -> ``KeyframePolicy.is_keyframe`` (confirmed tracks' scores)
-> (detect) -> ``associate_two_stage`` -> ``TrackRegistry.on_keyframe`` -> add / refresh / remove tracks in
the propagator -> emit only ``TrackRegistry.emittable`` ids.
"""

from __future__ import annotations

from .association import AssociationResult, associate
from .keyframes import KeyframePolicy
from .lifecycle import LabelVote, LifecycleUpdate, Track, TrackRegistry
from .two_stage import associate_two_stage

__all__ = [
    "AssociationResult",
    "KeyframePolicy",
    "LabelVote",
    "LifecycleUpdate",
    "Track",
    "TrackRegistry",
    "associate",
    "associate_two_stage",
]
