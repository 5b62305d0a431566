"""`mega_language_modeling`: fairseq's `language_modeling` plus streaming evaluation of Mega LMs.

Training, validation and everything else behave exactly like `language_modeling`.  With
`--stream-state`, `fairseq-eval-lm` evaluates the split the way the original fork's
`eval_mega_lm` did: as one long stream cut into consecutive, non-overlapping blocks of
`--tokens-per-sample` tokens, fed in stream order with batch size 1, and each Mega layer's
EMA state (B, D, N; with `--truncation-length` T, the last T-1 inputs) and current-chunk keys/values
are carried from one block to the next.  Every token is then predicted from the whole history before
it, and the result equals one forward pass over the entire split (with or without EMA truncation),
at the memory cost of a block:

    fairseq-eval-lm DATA --user-dir user_dir --path ckpt.pt --gen-subset test \\
        --task mega_language_modeling --stream-state --tokens-per-sample 2048

Without `--stream-state` the same command scores every block from a cold start, like
`language_modeling`.

How it hooks into the stock command: `fairseq-eval-lm` asks the task for its batches
(`eval_lm_dataloader`) and scores each one with `SequenceScorer`, which calls
`model(**sample["net_input"])`; a decoder-only fairseq model hands these keyword arguments to
its decoder.  In streaming mode the batches come in stream order and their `net_input`
carries `incremental_state=<one StreamState per evaluation>`, so the `MegaDecoder` reads its
saved layer states from it and writes the next ones back.  `StreamState` is a mapping but not
a `dict`, so fairseq's `move_to_cuda` passes it through untouched (it rebuilds dicts), and it
records every block as fully consumed (the decoder's "position" counter is kept at 0: each
call brings only new tokens, whereas during generation the decoder is handed the whole prefix
and skips the tokens it has seen).  A new call of `eval_lm_dataloader` starts a new stream
with an empty state.

Notes:
* Batch size is 1 (`--max-tokens`/`--batch-size` are not used): one stream, no padding.
  With several shards (`--num-shards` or distributed evaluation) each shard evaluates a
  contiguous range of blocks as its own stream, starting cold.
* Every `--sample-break-mode` works (blocks are consecutive in every mode); `--context-window`,
  `--add-bos-token` and fixed-length/fixed-batch padding break the stream and are refused.
* Unchunked models (`--decoder-chunk-size -1`) keep the keys/values of the whole history, so
  memory and time grow with the stream; a `simple` relative bias is also limited to
  `max_positions` then.  Streaming is meant for chunked models (a warning says so).
"""

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch
from fairseq.data import iterators
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

logger = logging.getLogger(__name__)

# key of the token counter in MegaDecoder's saved state ("mega_state")
_POSITION = "position"


@dataclass
class MegaLanguageModelingConfig(LanguageModelingConfig):
    stream_state: bool = field(
        default=False,
        metadata={
            "help": "fairseq-eval-lm: evaluate the split as one stream of consecutive --tokens-per-sample blocks "
            "(batch size 1, in order), carrying each Mega layer's EMA state and chunk cache from block to block "
            "so that every token sees the whole history (the original Mega fork's eval_mega_lm); training is unaffected"
        },
    )


class StreamState(MutableMapping):
    """A fairseq `incremental_state` that carries a Mega decoder's state across calls that each bring only
    new tokens (consecutive blocks of one stream).

    Not a `dict` on purpose: `fairseq.utils.move_to_cuda` rebuilds dicts, which would lose the state
    written by the model; any other object is passed through as is."""

    def __init__(self):
        self._store = {}

    def __getitem__(self, key):
        return self._store[key]

    def __setitem__(self, key, value):
        if isinstance(value, dict) and torch.is_tensor(value.get(_POSITION)):
            # the decoder counts the tokens it has consumed to skip them in the next call; here the next
            # call holds only the next block, so every block starts at 0 on top of the carried state
            value = dict(value)
            value[_POSITION] = torch.zeros_like(value[_POSITION])
        self._store[key] = value

    def __delitem__(self, key):
        del self._store[key]

    def __iter__(self):
        return iter(self._store)

    def __len__(self):
        return len(self._store)


def _with_state(batches: Iterator[dict], state: StreamState) -> Iterator[dict]:
    for sample in batches:
        if "net_input" in sample:
            sample["net_input"]["incremental_state"] = state
        yield sample


@register_task("mega_language_modeling", dataclass=MegaLanguageModelingConfig)
class MegaLanguageModelingTask(LanguageModelingTask):
    """`language_modeling` whose `fairseq-eval-lm` can carry Mega's state across blocks (`--stream-state`)."""

    def build_model(self, args, from_checkpoint=False):
        model = super().build_model(args, from_checkpoint)
        if getattr(self.args, "stream_state", False):
            from ..models.mega_lm import MegaDecoder

            decoder = getattr(model, "decoder", None)
            if not isinstance(decoder, MegaDecoder):
                raise ValueError(f"--stream-state needs a Mega language model (mega_lm), got {type(model).__name__}")
            if not decoder.stack.cfg.chunked:
                logger.warning(
                    "--stream-state with an unchunked Mega model: every block attends to the whole history, "
                    "so memory and time grow with the stream (use --decoder-chunk-size)"
                )
        return model

    def eval_lm_dataloader(
        self,
        dataset,
        max_tokens: Optional[int] = 36000,
        batch_size: Optional[int] = None,
        max_positions: Optional[int] = None,
        num_shards: int = 1,
        shard_id: int = 0,
        num_workers: int = 1,
        data_buffer_size: int = 10,
        context_window: int = 0,
    ):
        if not self.args.stream_state:
            return super().eval_lm_dataloader(
                dataset,
                max_tokens=max_tokens,
                batch_size=batch_size,
                max_positions=max_positions,
                num_shards=num_shards,
                shard_id=shard_id,
                num_workers=num_workers,
                data_buffer_size=data_buffer_size,
                context_window=context_window,
            )
        if context_window > 0:
            raise ValueError("--stream-state already gives every token its whole history; drop --context-window")
        if self.args.add_bos_token:
            raise ValueError(
                "--stream-state cannot be used with --add-bos-token (a bos in every block breaks the stream)"
            )
        if self.args.pad_to_fixed_length or self.args.pad_to_fixed_bsz:
            raise ValueError(
                "--stream-state cannot be used with --pad-to-fixed-length/--pad-to-fixed-bsz (padding inside the "
                "stream)"
            )
        if isinstance(max_positions, int) and len(dataset) > 0 and int(dataset.sizes.max()) > max_positions:
            raise ValueError(
                f"a block of {int(dataset.sizes.max())} tokens exceeds the model's {max_positions} positions"
            )
        # the blocks in stream order, one per batch (fairseq's own batching sorts them by length);
        # shards get contiguous ranges of blocks, each its own stream
        count = len(dataset)
        start, end = shard_id * count // num_shards, (shard_id + 1) * count // num_shards
        batches = [[index] for index in range(start, end)]
        epoch_itr = iterators.EpochBatchIterator(
            dataset=dataset,
            collate_fn=dataset.collater,
            batch_sampler=batches,
            seed=self.args.seed,
            num_workers=num_workers,
            buffer_size=data_buffer_size,
        )
        batch_itr = epoch_itr.next_epoch_itr(shuffle=False)
        return iterators.CountingIterator(_with_state(batch_itr, StreamState()), start=0, total=len(batch_itr))
