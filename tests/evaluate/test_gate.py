"""The compute gate: background I/O waits while torch computes on the CPU, never on CUDA."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from soebench.run.cache import BackgroundWriter
from soebench.run.gate import OPEN, ComputeGate

#: how long a check waits to see that a blocked worker stays blocked (a behaviour check, not a timing)
HELD = 0.2


@pytest.mark.parametrize(("device", "enabled"), [("cpu", True), (None, True), ("cuda", False), ("cuda:1", False), ("mps", False)])
def test_the_gate_is_enabled_for_cpu_devices_only(device, enabled):
    assert ComputeGate.for_device(device).enabled is enabled


def test_a_worker_waits_while_the_gate_is_closed_and_goes_on_when_it_opens():
    gate = ComputeGate()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (gate.wait(), done.set()))
    with gate.compute():
        assert not gate.is_open
        worker.start()
        assert not done.wait(HELD)
        with gate.compute():  # nested blocks keep it closed until the outer one ends
            pass
        assert not gate.is_open
    assert done.wait(5)
    worker.join(5)
    assert gate.is_open


def test_the_gate_opens_again_when_the_computation_raises():
    gate = ComputeGate()
    with pytest.raises(RuntimeError):
        with gate.compute():
            raise RuntimeError("generation failed")
    assert gate.is_open


def test_a_disabled_gate_never_blocks():
    for gate in (OPEN, ComputeGate.for_device("cuda")):
        with gate.compute():
            assert gate.is_open
            gate.wait()


def test_the_png_writer_holds_its_writes_while_the_gate_is_closed(tmp_path):
    from soebench.run.cache import save_png

    gate = ComputeGate()
    writer = BackgroundWriter(gate=gate)
    target = tmp_path / "out.png"
    try:
        with gate.compute():
            writer.submit(save_png, target, np.zeros((8, 8, 3), np.uint8))
            with pytest.raises(TimeoutError):
                writer._pending[0].result(timeout=HELD)
            assert not target.exists()
        writer.drain()
        assert target.is_file()
    finally:
        writer.close()


def test_the_scorer_closes_the_gate_for_the_network_passes_only():
    """CLIP and Inception run with the gate closed; the numpy metrics and the taxonomy with it open."""
    import torch

    from soebench.metrics.registry import MetricAvailability
    from soebench.run.scoring import Scorer, ScoredSample

    gate = ComputeGate()
    seen: dict[str, list[bool]] = {}

    def note(name):
        seen.setdefault(name, []).append(gate.is_open)

    class Clip:
        def encode_images(self, images):
            note("clip")
            return torch.nn.functional.normalize(torch.ones(len(images), 4), dim=-1)

        def encode_texts(self, texts):
            note("clip")
            return torch.nn.functional.normalize(torch.ones(len(texts), 4), dim=-1)

    def inception(batch):
        note("inception")
        return batch.reshape(len(batch), -1)[:, :8].astype(np.float32)

    class Label:
        label, evidence = "ok", {}

    def classify(*args, **kwargs):
        note("taxonomy")
        return Label()

    chosen = MetricAvailability(("clip_score_local", "clip_score_global", "fid_crop", "bg_psnr"))
    scorer = Scorer(chosen, clip=Clip(), inception=inception, classify=classify, gate=gate)
    image = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    sample = ScoredSample("s", image, image.copy(), mask, "a red cup", [20, 20, 20, 20], [8, 8, 56, 56])
    scorer.score([sample, sample])
    assert seen["clip"] and not any(seen["clip"])
    assert seen["inception"] and not any(seen["inception"])
    assert seen["taxonomy"] and all(seen["taxonomy"])
    assert gate.is_open
