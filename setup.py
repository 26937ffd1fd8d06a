"""synthetic_pretraining: pre-training on simple synthetic tasks with a Flax T5 (T5X-style)."""

import setuptools

setuptools.setup(
    name="synthetic_pretraining",
    version="0.1.0",
    description=("Synthetic pre-training tasks, SeqIO registries and a sharded Flax T5 trainer "
                 "re-implementing 'Insights into Pre-training via Simpler Synthetic Tasks'."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    # tasks/ is the registry folder of the design card; installed as synthetic_pretraining.tasks so a
    # T5X user can set MIXTURE_OR_TASK_MODULE = "synthetic_pretraining.tasks".
    # gin/ ships as package data (synthetic_pretraining/gin_files/ of an installed copy), found by
    # train.main whatever the working directory.
    packages=(setuptools.find_packages(include=["synthetic_pretraining", "synthetic_pretraining.*"])
              + ["synthetic_pretraining.tasks", "synthetic_pretraining.gin_files"]),
    package_dir={"synthetic_pretraining.tasks": "tasks", "synthetic_pretraining.gin_files": "gin"},
    package_data={"synthetic_pretraining.gin_files": ["*.gin", "**/*.gin"]},
    # Row-wise generator kernels (CPython-ordered set operations, per-row hash maps). Optional:
    # without a C compiler the generators fall back to numpy / Python sets (same output, slower).
    ext_modules=[setuptools.Extension("synthetic_pretraining.generators._native",
                                      ["synthetic_pretraining/generators/_native.c"],
                                      optional=True)],
    install_requires=[
        "jax>=0.10,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2,<0.3",
        "orbax-checkpoint>=0.12,<0.13",
        "seqio==0.0.20",
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "tensorflow-datasets>=4.9,<4.10",
        "gin-config>=0.5,<0.6",
        "sentencepiece>=0.2",
        "clu>=0.0.12",
        "rouge-score>=0.1.2",
        "sacrebleu>=2.4",
        "numpy>=1.26",
        "tqdm>=4.60",
        "matplotlib>=3.8",
        "msgpack>=1.0",
        "tensorstore>=0.1.60",
        "safetensors>=0.4",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "nbclient>=0.10", "nbformat>=5.9",
                             "ipykernel>=6", "torch==2.13.0", "transformers>=5.25,<6"]},
    entry_points={"console_scripts": [
        "synthetic-pretraining=synthetic_pretraining.cli:main",
        "sp-train=synthetic_pretraining.train.main:console_main",
    ]},
)
