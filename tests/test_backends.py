"""Keras backends other than TensorFlow: train, evaluate and answer from model.keras on JAX;
export refuses them in one line.

Each check runs in a subprocess: the backend is chosen once per process (KERAS_BACKEND).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Trains the tiny config 1 epoch (the trainer evaluates on the test split), evaluates again
# with the evaluate command's code, then loads model.keras and answers a question.
_JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras
    import numpy as np
    from keras_adahan import data, evaluate, run_files, train

    data_dir, run_dir = sys.argv[1], sys.argv[2]
    metrics = train.main(["--dataset", "tiny", "--epochs", "1", "--data_dir", data_dir,
                          "--output_dir", run_dir, "--dtype", "mixed_bfloat16"])
    evaluate.main([run_dir, "--split", "validation", "--data_dir", data_dir])
    run = run_files.load_run(run_dir)
    dataset = data.prepare_dataset("tiny", data_dir, build=False)
    arrays = data.question_arrays(dataset, "validation", run.vocabulary,
                                  run.model.config.image_size,
                                  run.model.config.max_question_length)
    outputs = evaluate.predict_split(run.model, arrays)
    print("RESULT " + json.dumps({
        "backend": keras.backend.backend(),
        "dtype": run.model.dtype_policy.name,
        "test_accuracy": metrics["accuracy"],
        "validation_answers": outputs["answer"].shape[0],
        "finite": bool(np.isfinite(outputs["answer"]).all()),
        "kept_cells": float(outputs["mask"].sum(-1).mean()),
        "validation_accuracy": float((outputs["answer"].argmax(-1) == arrays.answers).mean()),
    }))
""")


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    # As a user starts the tools: other tests (or modules they import) may have set the
    # TensorFlow log level in this process, which makes the tools leave TF's output be.
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("jax") is None,
    reason="jax is not installed (the `test` extra installs it)")
def test_jax_trains_evaluates_and_answers_from_keras_file(tmp_path):
    data_dir, run_dir = str(tmp_path / "tfds"), str(tmp_path / "run")
    result = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, data_dir, run_dir],
                            env=_env("jax"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    found = json.loads(line[len("RESULT "):])
    assert found["backend"] == "jax"
    assert found["dtype"] == "float32"  # Trained in mixed_bfloat16, saved float32.
    assert found["finite"] and found["validation_answers"] == 12
    assert found["kept_cells"] == 26  # HAN's 10% of the 16 x 16 cells, on JAX too.
    # evaluate's figure on JAX is the one its answers give.
    validation = json.loads(open(os.path.join(run_dir, "metrics_validation.json")).read())
    assert validation["accuracy"] == pytest.approx(found["validation_accuracy"])
    assert validation["num_questions"] == 12

    # Export traces TensorFlow graphs: on JAX it refuses in one line, leaving nothing.
    refused = subprocess.run(
        [sys.executable, "-m", "keras_adahan.export", run_dir, "--output_dir",
         str(tmp_path / "export")], env=_env("jax"), capture_output=True, text=True,
        timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "error: export needs the TensorFlow backend")
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not os.path.exists(tmp_path / "export")


def test_matmul_timing_runs_on_jax_without_tensorflow():
    # benchmarks/train_throughput.py and machine.py time matmuls on a machine that has
    # only JAX or PyTorch (a GPU machine): keras_adahan.compute must not need TensorFlow.
    script = textwrap.dedent("""
        import sys
        sys.modules["tensorflow"] = None  # import tensorflow now fails
        import keras
        from keras_adahan import compute
        flops = compute.matmul_flops("float32", size=64, seconds=0)
        policy, speedup = compute.auto_dtype()
        print(keras.backend.backend(), flops > 0, policy in ("float32", "mixed_bfloat16"))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["jax", "True", "True"]
