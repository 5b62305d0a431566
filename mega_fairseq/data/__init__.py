"""Datasets of the fine-tuning tasks (import the submodules directly).

- `token_labels`: per-token label targets aligned to `<s> tokens </s>` (token classification).
- `qa_windows`: question + context windows over long contexts, and the best answer span across
  windows (extractive QA).
"""
