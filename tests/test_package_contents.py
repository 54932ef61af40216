"""The installed package holds production code only.

Why: random-weight model builders exist because tests and benchmarks cannot download weights; one of them
reads a vocabulary from the shared test data outside the repository. Shipped in the package they would be
dead code for users that breaks when imported away from this checkout, so they live in tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gsam2_video"


def test_no_test_only_model_builders_in_the_package() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert modules
    assert not [p for p in modules if p.stem.startswith("random_")]
    for path in modules:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if "random_" in n or n.split(".")[0] in ("tests", "conftest")], path
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "GSAM2_DATA" not in node.value and "bert-base-uncased-vocab" not in node.value, path


def test_size_check_lives_in_production_code() -> None:
    from gsam2_video.models import sam2_checks, sam2_model

    assert sam2_model.sam2_size_problems is sam2_checks.sam2_size_problems
