"""CUDA kernel sources of gsam2-video: data, nothing to import. Installed as ``gsam2_video._cuda``.

This file makes the folder a regular package, which setuptools' editable installs need to map the name
``gsam2_video._cuda`` to it (a nested namespace package cannot be mapped). From a checkout on ``sys.path``
(pytest, ``PYTHONPATH=.``) the folder is also importable as the top-level ``cuda``: the name of NVIDIA's
namespace package (``cuda.pathfinder``, ``cuda.bindings``, imported by CuPy). Extending ``__path__``
pkgutil-style keeps those importable through this package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
