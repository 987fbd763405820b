"""barn_vqa generation: through Apache Beam, and after a build was killed half-way."""

import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_adahan import data
from keras_adahan.datasets.barn_vqa import Builder

DATASET_FOLDER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "datasets", "barn_vqa")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def records(data_dir, config="tiny"):
    """{file name: [tf.train.Example, ...]} of a built config, in file order."""
    folder = os.path.join(data_dir, "barn_vqa", config, "1.0.0")
    return {
        name: [tf.train.Example.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(os.path.join(folder, name))]
        for name in sorted(os.listdir(folder)) if ".tfrecord" in name
    }


def test_beam_build_matches_plain_build(tmp_path):
    plain_dir, beam_dir = str(tmp_path / "plain"), str(tmp_path / "beam")
    Builder(config="tiny", data_dir=plain_dir).download_and_prepare()
    # The documented command: DirectRunner, two worker processes, which import the
    # builder module by its installed name.
    result = subprocess.run(
        ["tfds", "build", DATASET_FOLDER, "--config", "tiny", "--data_dir", beam_dir,
         "--beam_pipeline_options=direct_num_workers=2,direct_running_mode=multi_processing"],
        env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    plain, beam = records(plain_dir), records(beam_dir)
    assert list(plain) == list(beam)  # Same shard files.
    for name in plain:
        assert len(plain[name]) == len(beam[name]) > 0
        for a, b in zip(plain[name], beam[name]):  # Same examples in the same order.
            # Protobuf writes a map's entries in no fixed order, so two plain builds
            # already differ in raw bytes; the canonical (deterministic) bytes do not.
            assert a.SerializeToString(deterministic=True) == b.SerializeToString(
                deterministic=True)
    plain_info = Builder(config="tiny", data_dir=plain_dir).info
    beam_info = Builder(config="tiny", data_dir=beam_dir).info
    for split in ("train", "validation", "test"):
        assert plain_info.splits[split].shard_lengths == beam_info.splits[split].shard_lengths
    # And the decoded features too.
    a = next(iter(tfds.as_numpy(Builder(config="tiny", data_dir=plain_dir).as_dataset("test"))))
    b = next(iter(tfds.as_numpy(Builder(config="tiny", data_dir=beam_dir).as_dataset("test"))))
    assert (a["image"] == b["image"]).all() and a["image_id"] == b["image_id"]


def incomplete_folders(data_dir, config):
    folder = os.path.join(data_dir, "barn_vqa", config)
    return [n for n in os.listdir(folder) if n.startswith("incomplete.")] if os.path.isdir(
        folder) else []


def test_killed_build_reads_as_not_built_and_is_cleaned(tmp_path, monkeypatch, capsys):
    data_dir = str(tmp_path)
    # `classic` takes minutes to build: kill it while it renders its training split.
    build = subprocess.Popen(
        [sys.executable, "-c", "import sys; from keras_adahan.datasets.barn_vqa import "
         "Builder; Builder(config='classic', data_dir=sys.argv[1]).download_and_prepare()",
         data_dir], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not incomplete_folders(data_dir, "classic") and time.time() < deadline:
            time.sleep(0.05)
        assert incomplete_folders(data_dir, "classic"), "the build never started"
        time.sleep(1.0)
        assert build.poll() is None, "the build finished before it could be killed"
        build.send_signal(signal.SIGKILL)
        build.wait()
    finally:
        if build.poll() is None:
            build.kill()

    assert incomplete_folders(data_dir, "classic")
    assert not Builder(config="classic", data_dir=data_dir).is_prepared()
    with pytest.raises(FileNotFoundError, match="barn_vqa/classic is not built"):
        data.prepare_dataset("classic", data_dir, build=False)

    # The trainer's path builds again, first deleting what the killed build left.
    # (Generating all of `classic` here would take minutes: stop at the call.)
    calls = []
    monkeypatch.setattr(Builder, "download_and_prepare", lambda self: calls.append(self))
    data.prepare_dataset("classic", data_dir)
    assert len(calls) == 1
    assert incomplete_folders(data_dir, "classic") == []
    assert "left by an interrupted build" in capsys.readouterr().out


def test_prepare_dataset_rebuilds_over_a_stale_incomplete_folder(tmp_path, capsys):
    data_dir = str(tmp_path)
    stale = tmp_path / "barn_vqa" / "tiny" / "incomplete.ABC123_1.0.0"
    stale.mkdir(parents=True)
    (stale / "barn_vqa-train.tfrecord-00000-of-00001").write_bytes(b"half a shard")
    dataset = data.prepare_dataset("tiny", data_dir)
    assert dataset.builder.is_prepared()
    assert dataset.num_examples("train") == 8
    assert not stale.exists()
    out = capsys.readouterr().out
    assert "incomplete.ABC123_1.0.0, left by an interrupted build" in out
