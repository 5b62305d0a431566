"""Packaging for mega_fairseq: MEGA (Moving Average Equipped Gated Attention) as a fairseq plugin.

Install torch first (``pip install torch==2.13.0``), then
``pip install -c constraints.txt -e '.[test]'``; see README.md for why.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
HF_EXTRAS = [
    "transformers==4.57.6",
    "safetensors",
    "protobuf",
    "huggingface_hub",
]  # protobuf: sentencepiece model edits for tokenizer export; huggingface_hub: the export's ModelCard

setup(
    name="mega_fairseq",
    version=re.search(r'__version__ = "([^"]+)"', (HERE / "mega_fairseq" / "__init__.py").read_text()).group(1),
    description="MEGA (Moving Average Equipped Gated Attention) as a fairseq --user-dir plugin",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mega_fairseq", "mega_fairseq.*"]),
    # model-code templates written into every HF export (mega_fairseq/convert/remote_code.py)
    package_data={"mega_fairseq.convert": ["hf_code/*.py"]},
    python_requires=">=3.10",
    install_requires=[
        # The exact torch version is pinned in constraints.txt, not here.  >= 2.6: torch.load defaults to
        # weights_only=True, which fairseq's own checkpoint loads (no weights_only argument) rely on to run no code
        # from a checkpoint file.
        "torch>=2.6",
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
        "tensorboard": ["tensorboard"],  # fairseq-train --tensorboard-logdir DIR writes its curves
        "demo": ["matplotlib"],  # the demo scripts' PNG of validation curves
        # fairseq's --ddp-backend fully_sharded and --zero-sharding os (FSDP needs CUDA; OSS also runs on CPU)
        "sharding": ["fairscale==0.4.13"],
        # the test extra holds every other extra, so that each feature's tests run (none skips for a missing package)
        "test": ["pytest", "ruff==0.17.6", "tensorboard", "matplotlib", "fairscale==0.4.13"] + HF_EXTRAS,
    },
    entry_points={
        "console_scripts": [
            "mega-export-hf = mega_fairseq.convert.hf_export:main",
            "mega-import-hf = mega_fairseq.convert.hf_import:main",
            "mega-import-original = mega_fairseq.convert.original:main",
            "mega-fairseq = mega_fairseq.cli.info:main",
            "mega-prepare-lra = mega_fairseq.cli.prepare_lra:main",
            "mega-prepare-token-classification = mega_fairseq.cli.prepare_token_classification:cli",
            "mega-prepare-extractive-qa = mega_fairseq.cli.prepare_extractive_qa:cli",
            "mega-spm-prepare = mega_fairseq.cli.spm_prepare:main",
            "mega-make-listops = mega_fairseq.cli.make_listops:main",
        ],
    },
)
