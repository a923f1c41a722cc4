"""Human tags vs automatic labels: kappa against hand-computed values, the agreement command on
tags set in the database, and --write into samples.parquet."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from soebench.cli.app import main
from soebench.errors import OutputExistsError
from soebench.fiftyone_export import resolve_sources
from soebench.fo.agreement import agreement, cohen_kappa, confusion, human_labels, write_human_labels
from soebench.fo.writer import export

pytestmark = pytest.mark.fiftyone


def test_kappa_hand_computed_two_labels():
    # 10 items: auto says ok 5x, missing 5x; humans ok 6x, missing 4x; 7 agree
    # p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa = 0.2 / 0.5 = 0.4
    auto = ["ok"] * 5 + ["missing"] * 5
    human = ["ok"] * 4 + ["missing"] + ["ok"] * 2 + ["missing"] * 3
    res = agreement(auto, human)
    assert res.labels == ["ok", "missing"]
    assert res.matrix.tolist() == [[4, 1], [2, 3]]
    assert res.accuracy == pytest.approx(0.7) and res.kappa == pytest.approx(0.4)


def test_kappa_hand_computed_three_labels():
    # rows 12, 8, 5; columns 11, 8, 6; n = 25; diagonal 19
    # p_o = 19/25, p_e = (12*11 + 8*8 + 5*6)/625 = 226/625 -> kappa = (475-226)/(625-226) = 249/399
    m = np.array([[10, 2, 0], [1, 5, 2], [0, 1, 4]])
    assert cohen_kappa(m) == pytest.approx(249 / 399)
    auto, human = [], []
    labels = ["ok", "missing", "mismatch"]
    for i in range(3):
        for j in range(3):
            auto += [labels[i]] * int(m[i, j])
            human += [labels[j]] * int(m[i, j])
    assert confusion(auto, human)[1].tolist() == m.tolist()
    assert agreement(auto, human).kappa == pytest.approx(249 / 399)


def test_kappa_edges():
    assert agreement(["ok", "missing"], ["ok", "missing"]).kappa == pytest.approx(1.0)
    assert math.isnan(agreement(["ok", "ok"], ["ok", "ok"]).kappa)  # p_e = 1: undefined
    assert math.isnan(agreement([], []).accuracy)
    # complete disagreement between two balanced raters: p_o = 0, p_e = 0.5 -> -1
    assert agreement(["ok", "missing"], ["missing", "ok"]).kappa == pytest.approx(-1.0)


def test_human_labels_from_tags():
    assert human_labels(["error", "human:missing", "human: ok", "Human:MISSING", "human:"]) == ["missing", "ok"]


def test_agreement_command_reads_tags_and_writes_them(tmp_path, synthetic_fixture, dataset_name, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synthetic_fixture["run"], run)
    before = pd.read_parquet(run / "samples.parquet")
    ds = export(resolve_sources([run]), name=dataset_name).dataset
    view = ds.select_group_slices("synth")
    autos = dict(zip(*view.values(["sample_id", "failure.label"])))
    ids = sorted(autos)
    # humans: agree on the first three, say "ok" on the fourth, give two labels to the fifth
    human = {ids[0]: autos[ids[0]], ids[1]: autos[ids[1]], ids[2]: autos[ids[2]], ids[3]: "ok"}
    for sample in view.iter_samples(autosave=True):
        sid = sample["sample_id"]
        if sid in human:
            sample.tags = sample.tags + [f"human:{human[sid]}"]
        elif sid == ids[4]:
            sample.tags = sample.tags + ["human:ok", "human:missing"]
    expected = agreement([autos[s] for s in ids[:4]], [human[s] for s in ids[:4]])

    rc = main(["agreement", "--name", dataset_name, "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)["synth"]
    assert report["n"] == 4 and report["conflicting"] == [ids[4]]
    assert report["accuracy"] == pytest.approx(expected.accuracy)
    assert (report["kappa"] is None and math.isnan(expected.kappa)) or report["kappa"] == pytest.approx(expected.kappa)

    rc = main(["agreement", "--name", dataset_name, "--run", "synth", "--write"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Cohen's kappa" in out and "auto \\ human" in out
    after = pd.read_parquet(run / "samples.parquet")
    assert list(after.columns) == list(before.columns) + ["human_label"]
    pd.testing.assert_frame_equal(after[before.columns], before)
    written = pq.read_table(run / "samples.parquet", columns=["sample_id", "human_label"]).to_pydict()
    assert dict(zip(written["sample_id"], written["human_label"])) == {sid: human.get(sid) for sid in before["sample_id"]}

    # a changed human label is not written over the old one without --overwrite
    with pytest.raises(OutputExistsError):
        write_human_labels(run, {ids[0]: "distortion"})
    write_human_labels(run, {ids[0]: "distortion"}, overwrite=True)
    assert pd.read_parquet(run / "samples.parquet").set_index("sample_id").loc[ids[0], "human_label"] == "distortion"

    # a typo in a tag is an error naming the sample (it would be counted as a label of its own)
    sample = view.match({"sample_id": ids[4]}).first()
    sample.tags = [t for t in sample.tags if not t.startswith("human:")] + ["human:mising[b]"]
    sample.save()
    assert main(["agreement", "--name", dataset_name, "--json"]) == 2
    err = capsys.readouterr().err
    assert f"sample {ids[4]} is tagged human:mising[b], not a taxonomy label" in err  # as typed, not markup
    assert "did you mean human:missing?" in err
    # prefix and label are read case-insensitively
    sample.tags = [t for t in sample.tags if not t.startswith("human:")] + ["Human:Missing"]
    sample.save()
    assert main(["agreement", "--name", dataset_name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["synth"]["n"] == 5

    # a tag set on the original slice (the App's default grid) judges no model: ignored, with a warning
    original = ds.select_group_slices("original").match({"sample_id": ids[0]}).first()
    original.tags = original.tags + ["human:missing"]
    original.save()
    assert main(["agreement", "--name", dataset_name, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["synth"]["n"] == 5
    assert "1 sample(s) of slice 'original' carry human: tags" in captured.err and ids[0] in captured.err

    assert main(["agreement", "--name", dataset_name, "--run", "nope"]) == 2
    assert main(["agreement", "--name", dataset_name + "-absent"]) == 2


def _tagged_copy(tmp_path, synthetic_fixture, dataset_name, label="ok", n=2):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synthetic_fixture["run"], run)
    ds = export(resolve_sources([run]), name=dataset_name).dataset
    view = ds.select_group_slices("synth")
    tagged = []
    for sample in view.limit(n).iter_samples(autosave=True):
        sample.tags = sample.tags + [f"human:{label}"]
        tagged.append(sample["sample_id"])
    return run, ds, tagged


def test_tags_of_images_the_run_has_since_replaced_are_refused(tmp_path, synthetic_fixture, dataset_name, capsys):
    """Re-evaluated after inspect (other output_key): the tags judged the old images."""
    run, ds, tagged = _tagged_copy(tmp_path, synthetic_fixture, dataset_name)
    frame = pd.read_parquet(run / "samples.parquet")
    frame.loc[frame["sample_id"] == tagged[0], "output_key"] = "a-new-generation"
    frame.to_parquet(run / "samples.parquet", index=False)
    for extra in ([], ["--write"]):
        assert main(["agreement", "--name", dataset_name, *extra]) == 2
        err = capsys.readouterr().err
        assert "has since replaced" in err and tagged[0] in err and "soebench inspect" in err
    assert "human_label" not in pq.read_schema(run / "samples.parquet").names
    export(resolve_sources([run]), name=dataset_name)  # re-inspect drops the stale tag: agreement works again
    assert main(["agreement", "--name", dataset_name, "--write"]) == 0


def test_human_label_tags_on_the_failure_label_are_named_not_silently_ignored(
        tmp_path, synthetic_fixture, dataset_name, capsys):
    run, ds, _ = _tagged_copy(tmp_path, synthetic_fixture, dataset_name, n=0)
    sample = ds.select_group_slices("synth").first()
    sample.failure.tags = ["human:missing"]
    sample.save()
    assert main(["agreement", "--name", dataset_name]) == 0
    assert "human: tags on their failure label" in capsys.readouterr().err


def test_label_tags_survive_an_unchanged_reinspect(tmp_path, synthetic_fixture, dataset_name):
    run, ds, _ = _tagged_copy(tmp_path, synthetic_fixture, dataset_name, n=0)
    sample = ds.select_group_slices("synth").first()
    sample.failure.tags = ["reviewed"]
    sample.ground_truth.tags = ["bad-annotation"]
    sample.save()
    ds = export(resolve_sources([run]), name=dataset_name).dataset
    again = ds.select_group_slices("synth").first()
    assert again.failure.tags == ["reviewed"] and again.ground_truth.tags == ["bad-annotation"]


def test_resume_keeps_the_written_human_labels_of_unchanged_outputs(tmp_path, fo_db):
    """evaluate --resume rewrites samples.parquet: the labels of `agreement --write` stay where the
    image is the one judged."""
    from soebench.evaluation import evaluate
    from tests.factories import make_manifest

    manifest = make_manifest(tmp_path / "m", 3)
    out = tmp_path / "run"
    first = evaluate(manifest, "mean-fill", out, metrics=("bg_psnr",), progress=False, report=False)
    ids = list(first.samples["sample_id"])
    write_human_labels(out, {ids[0]: "missing", ids[1]: "ok"})
    evaluate(manifest, "mean-fill", out, metrics=("bg_psnr",), progress=False, report=False, resume=True)
    labels = dict(zip(*pd.read_parquet(out / "samples.parquet")[["sample_id", "human_label"]].T.values))
    assert labels[ids[0]] == "missing" and labels[ids[1]] == "ok" and pd.isna(labels[ids[2]])
    evaluate(manifest, "mean-fill", out, metrics=("bg_psnr",), progress=False, report=False, resume=True,
             model_args="ring=9")  # other outputs: the labels judged the old images
    frame = pd.read_parquet(out / "samples.parquet")
    assert frame["human_label"].isna().all()
