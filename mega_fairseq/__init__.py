"""MEGA (Moving Average Equipped Gated Attention) for fairseq.

Importing this package (or its torch-only parts: `mega_fairseq.modules`, `mega_fairseq.metrics`)
has no side effects and does not import fairseq.  fairseq sees the plugin through
`mega_fairseq.plugin`, which registers the models, tasks and criterions and applies the fairseq
compatibility patches; it is loaded by ``--user-dir user_dir`` and by importing any of
`mega_fairseq.models`, `mega_fairseq.tasks` or `mega_fairseq.criterions`.

``python -m mega_fairseq`` (the console script ``mega-fairseq info``) lists what the plugin registers;
the data tools are console scripts too (`mega_fairseq.cli`).  After a pip install, pass this package's
directory to fairseq's ``--user-dir``.
"""

__version__ = "0.1.0"
