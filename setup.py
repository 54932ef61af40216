"""Package list for setuptools (everything else is declared in pyproject.toml).

``gsam2_video._cuda`` is the kernel sources folder ``cuda/`` at the repository root, mapped into the package
by ``[tool.setuptools.package-dir]``; pyproject's ``packages.find`` cannot list a mapped package, so the
list is built here: every ``gsam2_video`` package found on disk plus that one.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["gsam2_video", "gsam2_video.*"]), "gsam2_video._cuda"])
