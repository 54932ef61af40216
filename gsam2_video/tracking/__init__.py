"""Tracking logic that needs no model: keyframe policy, keyframe association, track lifecycle.

The pipeline drives these per frame: propagate -> ``KeyframePolicy.is_keyframe`` -> (detect) ->
``associate`` -> ``TrackRegistry.on_keyframe`` -> add / refresh / remove tracks in the propagator.
"""

from __future__ import annotations

from .association import AssociationResult, associate
from .keyframes import KeyframePolicy
from .lifecycle import LabelVote, LifecycleUpdate, Track, TrackRegistry

__all__ = [
    "AssociationResult",
    "KeyframePolicy",
    "LabelVote",
    "LifecycleUpdate",
    "Track",
    "TrackRegistry",
    "associate",
]
