"""Real COCO photographs -> soebench manifest -> soediff train (3 steps) -> export -> soebench evaluate.

Every stage goes through its command line and the files it writes, as a researcher runs them;
skips when the real COCO sample (../shared/data) is absent."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from soebench.cli.app import main as soebench_main
from soediff.cli import app as soediff_app

TRAIN_YAML = """\
resolution: 64
train_batch_size: 2
learning_rate: 0.01
mixed_precision: "no"
num_workers: 0
checkpointing_steps: 2
validation_rows: 1
validation_steps: 3
validation_inference_steps: 2
log_every: 1
report_to: none
prompt_template: "a photo of a {color} {category}"
lora: {rank: 4, alpha: 4}
vae: {learning_rate: 0.001}
"""


def _soediff(*args: str) -> None:
    result = CliRunner().invoke(soediff_app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)


def test_coco_manifest_train_export_evaluate(coco_sample, tmp_path):
    manifest = tmp_path / "coco-train.parquet"
    assert soebench_main(["build-dataset", "--source", "coco", "--images", str(coco_sample / "train2017"),
                          "--annotations", str(coco_sample / "annotations" / "instances_train2017.json"),
                          "--out", str(manifest), "--limit", "6", "--no-plots", "--quiet"]) == 0
    rows = pd.read_parquet(manifest)
    assert len(rows) == 6 and rows["teacher_crop"].notna().all()

    pipe = tmp_path / "sd-inpainting"
    _soediff("tiny-model", str(pipe))
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    run = tmp_path / "runs" / "soediff"
    _soediff("train", "--manifest", str(manifest), "--pretrained", str(pipe), "--out", str(run),
             "--config", str(tmp_path / "train.yaml"), "--max-steps", "3", "--no-progress")
    log = pd.read_csv(run / "logs" / "losses.csv")
    assert log["step"].tolist() == [1, 2, 3]
    assert np.isfinite(log[["loss", "denoise", "csd", "vae"]].to_numpy()).all()
    assert (run / "validation" / "step-00000003.png").is_file()
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["checkpoint-00000002", "checkpoint-00000003"]

    export = run / "export"
    _soediff("export", str(run), "--out", str(export), "--pipeline")
    assert json.loads((export / "export.json").read_text())["step"] == 3

    outputs = {}
    runs = (("base", f"path={pipe}"), ("lora", f"path={pipe},lora={export},vae_decoder=none"),
            ("lora+vae", f"path={pipe},lora={export}"),  # the decoder beside the LoRA is found by default
            ("pipeline", f"path={export / 'pipeline'},lora={export},vae_decoder=none"))
    for name, model_args in runs:
        out = tmp_path / f"eval-{name}"
        code = soebench_main(["evaluate", "-m", str(manifest), "--out", str(out), "--model", "diffusers",
                              "--model-args", f"{model_args},steps=2,resolution=64,guidance=1.0",
                              "--metrics", "bg_mse,bg_psnr", "--no-report", "--quiet", "--prompt", "label"])
        assert code == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["errors"]["count"] == 0, summary["errors"]
        samples = pd.read_parquet(out / "samples.parquet")
        assert len(samples) == 6 and np.isfinite(samples["bg_mse"]).all()
        outputs[name] = [np.asarray(Image.open(out / rel)) for rel in samples["output_path"]]
        for rec, img in zip(rows.itertuples(), outputs[name]):
            assert img.shape == (rec.height, rec.width, 3)
    for a, b in (("lora", "base"), ("lora+vae", "lora")):  # each trained part changes what is scored
        assert any(not np.array_equal(x, y) for x, y in zip(outputs[a], outputs[b])), (a, b)
    # the exported pipeline folder carries the same decoder: same outputs as loading it beside the LoRA
    assert all(np.array_equal(x, y) for x, y in zip(outputs["pipeline"], outputs["lora+vae"]))
