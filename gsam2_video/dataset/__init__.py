"""Dataset generation: label many videos with per-frame masks in YouTube-VOS / YouTube-VIS layouts.

Why a package of its own: turning a folder of videos into a training set is a different job from tracking
one video. It needs input expansion and manifests (:mod:`.inputs`), a crash-safe on-disk layout that a
re-run can resume (:mod:`.layout`), per-video object records and filters (:mod:`.record`,
:mod:`.filters`), and a loop that loads the models once and lets one bad video fail alone
(:mod:`.runner`, :mod:`.work`). Beyond one machine: ``--shard I/N`` splits the inputs for job arrays
(:mod:`.shard`, :mod:`.merge`) and ``--backend ray`` spreads videos over Ray workers (:mod:`.ray_backend`,
Ray itself optional). The Tracker itself is reused unchanged.
"""

from __future__ import annotations

from .filters import Filters
from .inputs import VideoJob, collect_jobs
from .layout import DatasetLayout
from .merge import merge_dataset
from .shard import Shard, shard_of

__all__ = ["DatasetLayout", "Filters", "Shard", "VideoJob", "collect_jobs", "merge_dataset", "shard_of"]
