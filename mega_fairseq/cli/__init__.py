"""Command-line tools installed with the package (console scripts, see setup.py).

Data preparation (no fairseq model code; `prepare_*` binarize with fairseq-preprocess):
`mega-prepare-lra` (`prepare_lra`), `mega-prepare-token-classification` (`prepare_token_classification`),
`mega-prepare-extractive-qa` (`prepare_extractive_qa`), `mega-spm-prepare` (`spm_prepare`),
`mega-make-listops` (`make_listops`).  What the plugin registers with fairseq: `mega-fairseq info`
(`info`, also ``python -m mega_fairseq``).  `scripts/<module>.py` in a checkout runs the same code.
"""
