"""Packaging for mega_fairseq: MEGA (Moving Average Equipped Gated Attention) as a fairseq plugin.

Install torch first (``pip install torch==2.13.0``), then
``pip install -c constraints.txt -e '.[test]'``; see README.md for why.
"""

from pathlib import Path

from setuptools import find_packages, setup

HF_EXTRAS = [
    "transformers==4.57.6",
    "safetensors",
    "protobuf",
]  # protobuf: sentencepiece model edits for tokenizer export

setup(
    name="mega_fairseq",
    version="0.1.0",
    description="MEGA (Moving Average Equipped Gated Attention) as a fairseq --user-dir plugin",
    long_description=(Path(__file__).resolve().parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mega_fairseq", "mega_fairseq.*"]),
    python_requires=">=3.10",
    install_requires=[
        # The exact torch version is pinned in constraints.txt, not here.
        "torch>=2.0",
        # Official fairseq 0.12.2 does not import on Python 3.11 (fairseq issue #5012);
        # ve-fairseq is a wheel of upstream fairseq main with that fixed.
        "ve-fairseq==0.12.3",
        "hydra-core>=1.3,<1.4",
        "omegaconf>=2.3,<2.4",
        # fairseq 0.12.3 still calls np.compat.long (token_block_dataset with
        # --sample-break-mode eos, language_pair_dataset), removed in numpy 2.
        "numpy<2",
        "sentencepiece",
        "sacrebleu",
    ],
    extras_require={
        "hf": HF_EXTRAS,
        # fairseq's --ddp-backend fully_sharded and --zero-sharding os (FSDP needs CUDA; OSS also runs on CPU)
        "sharding": ["fairscale==0.4.13"],
        "test": ["pytest", "ruff==0.17.6"] + HF_EXTRAS,
    },
    entry_points={
        "console_scripts": [
            "mega-export-hf = mega_fairseq.convert.hf_export:main",
            "mega-import-hf = mega_fairseq.convert.hf_import:main",
            "mega-import-original = mega_fairseq.convert.original:main",
        ],
    },
)
