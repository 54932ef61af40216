"""A local Ray cluster started by ``dataset --backend ray`` listens on 127.0.0.1 only (issue 16 item 6).

The cluster is started in a fresh interpreter (the test process may already hold a Ray session) through the
same ``start_ray`` the backend calls; every listening socket of that process and of all the Ray processes it
started is listed with psutil (Ray ships it) and must be a loopback address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, ray
from gsam2_video.dataset.ray_backend import start_ray
start_ray(ray, None)

@ray.remote
def one():
    return 1

assert ray.get(one.remote()) == 1  # the cluster works, workers included
import psutil  # importable once ray put its bundled copy on the path
found = []
for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
    try:
        found += [[proc.name(), c.laddr.ip, c.laddr.port] for c in proc.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        pass
ray.shutdown()
print(json.dumps(found))
"""


def test_local_ray_cluster_listens_on_loopback_only() -> None:
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=180,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listening = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in listening}
    assert "gcs_server" in names and "raylet" in names, listening  # the servers were found at all
    outside = [entry for entry in listening if entry[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert outside == [], outside
