"""``--shard I/N``: which videos of the input set one of N independent runs labels.

Why a hash of the name and not list position: a job array's tasks each expand the inputs on their own, and
users add or reorder inputs between attempts. A video's shard depends only on its dataset name (the folder
name its outputs go to), so it stays in the same shard across re-runs, resumes and changes to the rest of
the list, and two shards can never both label it (with the same N). The price is balance: shards get
*about* equal shares (sha256 spreads names uniformly), not exactly equal ones.

``I`` counts from 0 (SLURM ``--array=0-7`` gives ``$SLURM_ARRAY_TASK_ID``; Kubernetes indexed Jobs give
``$JOB_COMPLETION_INDEX``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ConfigError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
T = TypeVar("T")


def shard_of(name: str, count: int) -> int:
    """The shard (0..count-1) a video named ``name`` belongs to: the first 8 bytes of sha256(name) mod N."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= I < N (I counts from 0)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` -> Shard(I, N)."""
        match = _SPEC.match(text)
        if match is None:
            raise ConfigError(f"shard {text!r}: expected I/N, e.g. 0/4 for the first of 4 shards")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def label(self) -> str:
        """The shard's folder name under ``DIR/shards``: ``I-of-N``."""
        return f"{self.index}-of-{self.count}"

    def owns(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def select(self, jobs: Iterable[T]) -> list[T]:
        """The jobs (anything with a ``name``) of this shard, in their input order."""
        return [job for job in jobs if self.owns(job.name)]  # type: ignore[attr-defined]

    def to_json(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
