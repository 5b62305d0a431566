"""EMA truncation (`--truncation-length`) in decoding: fairseq-generate, streaming evaluation and the training
forward compute the same function.

The rule (modules/ema.py): a stateful call equals the full forward at those positions, truncation included, so a
prompt fed as a block, the tokens fed one at a time, and `--stream-state` blocks all give what one training forward
over the whole sequence gives, also past the truncation length.  (Beam search with truncation vs the full
forward: tests/test_lm_generation.py.)"""

import pytest
import torch
from test_streaming_eval import tiny_model, token_log_probs

from mega_fairseq.tasks.mega_language_modeling import StreamState


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("block", [16, 13])
def test_stream_state_blocks_with_truncation_equal_one_pass(block):
    """`--stream-state` blocks (the fairseq-eval-lm path) == one truncated forward over the whole stream, and a
    prompt block followed by single tokens (the fairseq-generate path) == the same."""
    model, dictionary = tiny_model(truncation_length=12)
    gen = torch.Generator().manual_seed(0)
    stream = torch.randint(dictionary.nspecial, len(dictionary), (2, 61), generator=gen)
    with torch.no_grad():
        full = token_log_probs(model, stream)
        state = StreamState()
        carried = torch.cat(
            [token_log_probs(model, stream[:, s : s + block], incremental_state=state) for s in range(0, 61, block)], 1
        )
        incremental = {}
        steps = [token_log_probs(model, stream[:, :block], incremental_state=incremental)]
        for t in range(block, 61):  # the decoder is handed the whole prefix and skips what it has seen
            steps.append(token_log_probs(model, stream[:, : t + 1], incremental_state=incremental))
    assert (carried - full).abs().max() <= 1e-5
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-5
