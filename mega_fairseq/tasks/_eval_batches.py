"""Evaluation batches that keep every example.

fairseq's `batch_by_size` drops the last batch when its size is not a multiple of
`--required-batch-size-multiple` (default 8; fairseq issue #5036), so validation would silently
score only part of a split.  Tasks that report per-example metrics mix this in: outside the
training split the multiple is 1.  The training split is ``cfg.train_subset`` (comma-separated),
``train`` for task configs without that field.
"""


class KeepAllEvalBatchesMixin:
    def get_batch_iterator(self, dataset, *args, **kwargs):
        train = [self.datasets.get(name) for name in str(getattr(self.cfg, "train_subset", "train")).split(",")]
        if all(dataset is not d for d in train) and "required_batch_size_multiple" in kwargs:
            kwargs["required_batch_size_multiple"] = 1
        return super().get_batch_iterator(dataset, *args, **kwargs)
