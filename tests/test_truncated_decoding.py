"""EMA truncation (`--truncation-length`) in decoding: fairseq-generate, streaming evaluation and the training
forward compute the same function.

The rule (modules/ema.py): a stateful call equals the full forward at those positions, truncation included, so a
prompt fed as a block, the tokens fed one at a time, and `--stream-state` blocks all give what one training forward
over the whole sequence gives, also past the truncation length."""

import pytest
import torch
from test_fairseq_lm import tiny_lm
from test_lm_generation import generators, prompts, run
from test_streaming_eval import tiny_model, token_log_probs

from mega_fairseq.tasks.mega_language_modeling import StreamState
from mega_fairseq.testing import randomize_


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_beam_search_with_truncation_equals_recompute():
    """fairseq's SequenceGenerator (prompts forced token by token, then beam steps, incremental state) scores
    every hypothesis as the full forward (training maths) does, with sequences 4x longer than the truncation."""
    model, dictionary = tiny_lm(decoder_chunk_size=4, truncation_length=3)
    randomize_(model, seed=3)
    inc, ref = generators(model, dictionary, beam_size=3, max_len_b=12, min_len=2, len_penalty=0.7)
    prefix = prompts(dictionary, [2, 5, 9])
    with torch.no_grad():
        hyps_inc, hyps_ref = run(inc, prefix), run(ref, prefix)
    for a_sent, b_sent in zip(hyps_inc, hyps_ref):
        for a, b in zip(a_sent, b_sent):
            assert torch.equal(a["tokens"], b["tokens"])
            tol = 1e-6 * max(1.0, b["positional_scores"].abs().max().item())
            assert (a["positional_scores"] - b["positional_scores"]).abs().max() <= tol


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
