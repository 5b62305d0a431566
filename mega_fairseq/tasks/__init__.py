"""fairseq tasks registered by mega_fairseq.

Currently none: the stock fairseq tasks (e.g. ``language_modeling``) are used.
Modules added here must be imported from this file so that importing
``mega_fairseq`` registers them.
"""
