"""``--compile`` (issue 12, item 5): torch.compile of the image encoder and the batched memory attention
gives the eager results on the CPU (tiny model, objects born on different frames so the memory slots pad),
and fixed shape buckets keep the number of compiled memory-attention graphs small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gsam2_video.config import PropagatorConfig
from gsam2_video.models.propagator import Sam2Propagator


def _run(prop: Sam2Propagator, frames: list[np.ndarray]) -> list[torch.Tensor]:
    h, w = frames[0].shape[:2]
    prop.reset(h, w)
    lows = []
    for i, frame in enumerate(frames):
        feats = prop.encode(frame, i)
        prop.propagate(feats)
        if i in (0, 2, 3):  # births on different frames: 1, 2, then 3 live objects, padded memories
            x = 15.0 + 90 * (i // 2)
            prop.add_object(i + 1, feats, box=(x, 30.0, x + 110.0, 210.0))
        lows.append(prop.commit(feats).low_res.clone())
    return lows


@pytest.mark.slow  # inductor compiles the encoder + 3 memory-attention graphs: 3 min here (2 shared cores)
def test_compiled_equals_eager_on_cpu(tiny_models: dict[str, Path], tree_frames: list[np.ndarray]) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sam = str(tiny_models["sam2"])
        eager = Sam2Propagator.from_pretrained(sam, PropagatorConfig(model=sam), device="cpu", dtype="fp32")
        compiled = Sam2Propagator.from_pretrained(sam, PropagatorConfig(model=sam, compile=True), device="cpu",
                                                  dtype="fp32")
        assert compiled.model is not eager.model
        assert compiled.model.vision_encoder._compiled_call_impl is not None
        assert eager.model.vision_encoder._compiled_call_impl is None
        shapes: list[tuple[int, ...]] = []
        core = compiled.sam2._attention_core
        compiled.sam2._attention_core = lambda ma, cur, pos, mem, *a: shapes.append(tuple(mem.shape)) or core(ma, cur, pos,
                                                                                                          mem, *a)
        frames = tree_frames[:7]
        ref, got = _run(eager, frames), _run(compiled, frames)
    finally:
        torch.set_num_threads(old)
    for t, (a, b) in enumerate(zip(ref, got)):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=0, atol=1e-3, msg=lambda m, t=t: f"frame {t}: {m}")
        assert torch.equal(a > 0, b > 0) or float(((a > 0) != (b > 0)).float().mean()) < 1e-3
    # buckets: memory slots fixed at the caps whatever each object holds, the batch rounded up to a power of
    # two: tracked objects per frame 1, 1, 2, 3, 3, 3 -> batches 1, 1, 2, 4, 4, 4, one key length throughout
    cap = compiled.config.max_conditioning_frames
    h, w = compiled.model.backbone_feature_sizes[-1]
    splits = compiled.model.hidden_dim // compiled.model.mem_dim
    keys = (cap + compiled.sam2.num_maskmem - 1) * h * w + (cap + compiled.session.max_pointers - 1) * splits
    assert shapes == [(b, keys, compiled.model.mem_dim) for b in (1, 1, 2, 4, 4, 4)]


def test_compile_flag_reaches_the_propagator_config() -> None:
    import argparse

    from gsam2_video.cli.options import add_model_options, tracker_config

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    assert tracker_config(parser.parse_args(["--compile"])).propagator.compile is True
    assert tracker_config(parser.parse_args([])).propagator.compile is False
