"""Shared pytest fixtures, and `load_benchmark` for the tests of benchmarks/ scripts."""

import importlib.util
import os

import pytest


def load_benchmark(name):
    """The script `benchmarks/NAME.py` as a module (benchmarks/ is no package)."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def exported_tiny_run(tmp_path_factory):
    """A run trained 1 epoch on barn_vqa/tiny and exported, once per test session.

    Returns a dict: `run_dir`, `export_dir`, `data_dir`, `report` (the export report).
    Used by tests/test_export.py and tests/test_predict.py.
    """
    from keras_adahan import train
    from keras_adahan.export import export

    root = tmp_path_factory.mktemp("export_tiny")
    data_dir = str(root / "tfds")
    run_dir = str(root / "run")
    export_dir = str(root / "export")
    # float32 whatever --dtype auto would pick: the tests compare its answers across
    # exports, and a 1-epoch model's close answers should not depend on the CI machine.
    train.main(["--dataset", "tiny", "--epochs", "1", "--data_dir", data_dir,
                "--output_dir", run_dir, "--dtype", "float32"])
    report = export(run_dir, export_dir, calibration_steps=8, log=lambda message: None)
    assert os.path.isdir(export_dir)
    return {"run_dir": run_dir, "export_dir": export_dir, "data_dir": data_dir,
            "report": report}
