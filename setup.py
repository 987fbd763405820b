"""Installs the `keras_adahan` import name only.

The repository keeps `datasets/` (the TFDS dataset folder, laid out as `tfds new` makes it)
and `export/` at the top level, as the design card asks, but they install beneath
`keras_adahan` (`keras_adahan.datasets`, `keras_adahan.export`): a top-level `datasets`
package would shadow the Hugging Face library of that name.
"""

from setuptools import setup

setup(
    name="keras-adahan",
    version="0.1.0",
    description=(
        "Hard-attention VQA (HAN and AdaHAN, Malinowski et al., ECCV 2018) in Keras 3, "
        "on a synthetic barn VQA dataset, Sort-of-CLEVR, CLEVR or your own images, with "
        "TFLite export."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=[
        "keras_adahan",
        "keras_adahan.datasets",
        "keras_adahan.datasets.barn_vqa",
        "keras_adahan.datasets.clevr",
        "keras_adahan.datasets.sort_of_clevr",
        "keras_adahan.datasets.vqa_folder",
        "keras_adahan.export",
    ],
    package_dir={
        "keras_adahan": "keras_adahan",
        "keras_adahan.datasets": "datasets",
        "keras_adahan.export": "export",
    },
    package_data={
        "keras_adahan.datasets.barn_vqa": [
            "checksums.tsv",
            "README.md",
            "TAGS.txt",
            "CITATIONS.bib",
            "dummy_data/*",
        ],
        "keras_adahan.datasets.clevr": ["README.md", "dummy_data/CLEVR_v1.0/*/*",
                                        "dummy_data/CLEVR_v1.0/images/*/*"],
        "keras_adahan.datasets.sort_of_clevr": ["README.md", "dummy_data/*"],
        "keras_adahan.datasets.vqa_folder": ["README.md"],
    },
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22; platform_machine=='x86_64'",
        "tensorflow>=2.21,<2.22; platform_machine!='x86_64'",
        "keras>=3.15,<3.16",
        "tensorflow-datasets>=4.9.10,<4.10",
        "numpy>=1.26,<2.5",
        "pillow>=10",
        "matplotlib>=3.8",
        # The `tfds` command line tool imports both at start.
        # tensorflow-datasets' own extras pin apache-beam<2.65, whose protobuf<6 cannot
        # install beside TF 2.21 (protobuf>=6.31); 2.65 and later accept protobuf 6.
        "apache-beam>=2.65,<3",
        "mlcroissant>=1.0,<2",
        # Needed by `download_and_prepare` for a builder living inside a package.
        "importlib_resources>=6",
        # On-device inference (the replacement of the deprecated tf.lite.Interpreter).
        "ai-edge-litert>=2.0,<3",
    ],
    extras_require={
        # tensorflow_datasets.testing needs dill; jax: tests/test_backends.py trains on the
        # Keras JAX backend (CPU wheels); pytest-xdist: the suite runs on 2 processes
        # (pytest.ini).
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "dill>=0.3.8", "jax>=0.10,<0.11"],
        # Keras' JAX backend on NVIDIA GPUs (CUDA 12 wheels). TensorFlow's own GPU build
        # cannot be an extra beside the tensorflow-cpu requirement: README, "GPUs".
        "gpu": ["jax[cuda12]>=0.10,<0.11"],
        # The PyTorch reference the speed benchmarks run beside the project
        # (benchmarks/pytorch_reference.py); never needed to train, test or export.
        "benchmarks": ["torch==2.13.0"],
        # Reading a PyTorch-AdaHAN .pt state_dict (python -m keras_adahan.convert_reference);
        # a plain `torch` pulls the CUDA build: on CPU machines install torch's CPU wheel first.
        "convert": ["torch>=2.1"],
    },
)
