"""Generation with mega_lm through fairseq's SequenceGenerator: incremental decoding == recomputing from scratch."""

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator
from test_fairseq_lm import tiny_lm

from mega_fairseq.testing import randomize_


def generators(model, dictionary, **kwargs):
    incremental = SequenceGenerator([model], dictionary, **kwargs)
    recompute = SequenceGenerator([model], dictionary, **kwargs)
    recompute.model.has_incremental = False  # the reference: every step runs the whole prefix
    assert incremental.model.has_incremental_states()
    return incremental, recompute


def prompts(dictionary, lengths, seed=0):
    """A batch of prompts of different lengths, right-padded as fairseq collates prefixes."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.full((len(lengths), max(lengths)), dictionary.pad())
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randint(dictionary.nspecial, len(dictionary), (n,), generator=gen)
    return batch


def run(generator, prefix):
    sample = {"net_input": {"src_tokens": prefix, "src_lengths": prefix.ne(1).sum(1)}}
    return generator.generate([generator.model.single_model], sample, prefix_tokens=prefix)


@pytest.mark.parametrize(
    "overrides",
    [
        {"decoder_chunk_size": 4},
        {"decoder_chunk_size": -1},
        {"decoder_chunk_size": 4, "attention_activation_fn": "laplace"},
        {"decoder_chunk_size": 4, "attention_activation_fn": "relu2", "rel_pos_bias": "simple"},
        {"decoder_chunk_size": 4, "truncation_length": 3},  # sequences 4x longer than the EMA truncation
    ],
)
def test_beam_search_incremental_equals_recompute(overrides):
    model, dictionary = tiny_lm(**overrides)
    randomize_(model, seed=3)
    inc, ref = generators(model, dictionary, beam_size=3, max_len_b=12, min_len=2, len_penalty=0.7)
    prefix = prompts(dictionary, [2, 5, 9])
    with torch.no_grad():
        hyps_inc, hyps_ref = run(inc, prefix), run(ref, prefix)
    for a_sent, b_sent in zip(hyps_inc, hyps_ref):
        assert len(a_sent) == len(b_sent) == 3
        for a, b in zip(a_sent, b_sent):
            assert torch.equal(a["tokens"], b["tokens"])
            # randomized weights give log-probs of ~-50: compare at fp32 resolution of that scale
            tol = 1e-6 * max(1.0, b["positional_scores"].abs().max().item())
            assert abs(a["score"].item() - b["score"].item()) <= tol
            assert (a["positional_scores"] - b["positional_scores"]).abs().max() <= tol


def test_sampling_incremental_equals_recompute():
    model, dictionary = tiny_lm(decoder_chunk_size=4)
    randomize_(model, seed=4)
    kwargs = dict(beam_size=2, max_len_b=10, search_strategy=None)
    from fairseq import search

    outs = []
    for incremental in (True, False):
        gen = SequenceGenerator(
            [model],
            dictionary,
            search_strategy=search.Sampling(dictionary, sampling_topk=5),
            **{k: v for k, v in kwargs.items() if k != "search_strategy"},
        )
        gen.model.has_incremental = incremental
        torch.manual_seed(11)
        with torch.no_grad():
            outs.append(run(gen, prompts(dictionary, [3, 6])))
    for a_sent, b_sent in zip(*outs):
        for a, b in zip(a_sent, b_sent):
            assert torch.equal(a["tokens"], b["tokens"])


def test_bidirectional_stack_refuses_to_decode():
    from mega_fairseq.modules import MegaLayerConfig, MegaStack

    stack = MegaStack(
        MegaLayerConfig(embed_dim=16, z_dim=8, hidden_dim=16, ffn_dim=16, n_dim=2), 1, torch.nn.Embedding(10, 16)
    )
    with pytest.raises(ValueError, match="incremental state needs a causal layer"):
        stack(torch.ones(1, 2, dtype=torch.long), return_state=True)


def test_prompt_longer_than_simple_bias_is_a_clear_error():
    model, dictionary = tiny_lm(rel_pos_bias="simple", decoder_chunk_size=-1, tokens_per_sample=8)
    assert model.decoder.max_positions() == 8
    with pytest.raises(ValueError, match="longer than the simple relative bias supports \\(8\\)"):
        model(torch.full((1, 9), dictionary.nspecial))
