"""mega_lm through fairseq: registration, incremental decoding via fairseq's incremental_state, CLI training."""

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY

import mega_fairseq.plugin  # noqa: F401  registers the plugin

from conftest import LM_TRAIN_ARGS, REPO, fairseq_cli


def tiny_lm(arch="mega_lm_tiny", **overrides):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.tasks.language_modeling import LanguageModelingTask

    dictionary = Dictionary()
    for i in range(30):
        dictionary.add_symbol(f"w{i}")
    parser = options.get_training_parser()
    argv = [
        "dummy",
        "--task",
        "language_modeling",
        "--arch",
        arch,
        "--user-dir",
        str(REPO / "user_dir"),
        "--tokens-per-sample",
        "64",
    ]
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    task = LanguageModelingTask(cfg.task, dictionary)
    return task.build_model(cfg.model).eval(), dictionary


PRESETS = [
    "mega_lm",
    "mega_lm_big",
    "mega_lm_adaptive_big",
    "mega_lm_adaptive_base",
    "mega_lm_enwik8_base",
    "mega_lm_enwik8_large",
    "mega_lm_hf",
    "mega_lm_tiny",
]


def test_presets_are_registered():
    assert set(PRESETS) <= set(ARCH_MODEL_REGISTRY)


@pytest.mark.parametrize("arch", ["mega_lm", "mega_lm_adaptive_base", "mega_lm_enwik8_base", "mega_lm_hf"])
def test_presets_build_and_run(arch):
    overrides = {
        "decoder_layers": 1,
        "decoder_embed_dim": 16,
        "decoder_hidden_dim": 32,
        "decoder_ffn_embed_dim": 32,
        "decoder_z_dim": 8,
    }
    if "adaptive" in arch:
        overrides.update(adaptive_input_cutoff="10,20", adaptive_softmax_cutoff="10,20")
    model, dictionary = tiny_lm(arch, **overrides)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (2, 9))
    with torch.no_grad():
        out, _ = model(tokens)
        lprobs = model.get_normalized_probs((out, None), log_probs=True)
    assert lprobs.shape == (2, 9, len(dictionary)) and torch.isfinite(lprobs).all()
    assert torch.allclose(lprobs.exp().sum(-1), torch.ones(2, 9), atol=1e-4)


@pytest.mark.parametrize("activation,chunk", [("softmax", -1), ("laplace", 4), ("relu2", -1)])
def test_mega_lm_hf_matches_transformers_causal_lm(activation, chunk):
    """The exportable preset's logits equal transformers' MegaForCausalLM with the same weights."""
    from transformers import MegaConfig, MegaForCausalLM

    from mega_fairseq.convert.hf_names import lm_state_dict_from_hf, lm_state_dict_to_hf, to_hf_config_kwargs
    from mega_fairseq.testing import randomize_

    model, dictionary = tiny_lm(
        "mega_lm_hf", decoder_chunk_size=chunk, attention_activation_fn=activation, decoder_layers=2
    )
    randomize_(model)
    cfg = model.decoder.stack.cfg
    hf_cfg = MegaConfig(
        **to_hf_config_kwargs(cfg, 2, len(dictionary), dictionary.pad()), add_lm_hidden_dense_layer=False
    )
    hf = MegaForCausalLM(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(lm_state_dict_to_hf(model.decoder.state_dict(), cfg), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the word embeddings
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (2, 8))
    with torch.no_grad():
        ours, _ = model(tokens)
        theirs = hf(tokens, use_cache=False).logits
    assert (ours - theirs).abs().max() <= 1e-5 * max(1.0, theirs.abs().max().item())
    back = lm_state_dict_from_hf(hf.state_dict(), cfg)
    for key, value in model.decoder.state_dict().items():
        assert torch.equal(back[key], value), key


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"decoder_chunk_size": 4},
        {"attention_activation_fn": "laplace", "decoder_chunk_size": 4},
        {"rel_pos_bias": "simple"},
    ],
)
def test_incremental_decoding_equals_full_forward(overrides):
    model, dictionary = tiny_lm(**overrides)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (3, 10))
    with torch.no_grad():
        full, _ = model(tokens)
        incremental_state = {}
        steps = []
        for t in range(10):
            # fairseq passes the whole prefix every step; the decoder runs only the new token
            out, _ = model.decoder(tokens[:, : t + 1], incremental_state=incremental_state)
            steps.append(out[:, -1:])
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-4 * full.abs().max().clamp(min=1)


def test_reorder_incremental_state():
    model, dictionary = tiny_lm(decoder_chunk_size=4)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (3, 7))
    order = torch.tensor([1, 1, 0])
    with torch.no_grad():
        state = {}
        model.decoder(tokens[:, :6], incremental_state=state)
        model.decoder.reorder_incremental_state_scripting(state, order)
        out, _ = model.decoder(tokens[order][:, :7], incremental_state=state)
        full, _ = model(tokens[order])
    assert (out[:, -1] - full[:, -1]).abs().max() <= 1e-4


def test_fairseq_train_and_eval_lm_cli(trained_lm):
    data, checkpoint, log = trained_lm
    losses = [
        float(line.split("loss=")[1].split(",")[0])
        for line in log.splitlines()
        if "train_inner" in line and "loss=" in line
    ]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    ev = fairseq_cli(
        "fairseq-eval-lm",
        data,
        "--user-dir",
        REPO / "user_dir",
        "--path",
        checkpoint,
        "--gen-subset",
        "valid",
        "--tokens-per-sample",
        "32",
        "--cpu",
        "--num-workers",
        "0",
    )
    assert "Perplexity" in ev.stderr + ev.stdout


def test_fairseq_generate_with_lm_prefix(trained_lm):
    data, checkpoint, _ = trained_lm
    out = fairseq_cli(
        "fairseq-generate",
        data,
        "--task",
        "language_modeling",
        "--user-dir",
        REPO / "user_dir",
        "--path",
        checkpoint,
        "--gen-subset",
        "test",
        "--tokens-per-sample",
        "32",
        "--prefix-size",
        "4",
        "--beam",
        "3",
        "--max-len-b",
        "12",
        "--sample-break-mode",
        "eos",
        "--cpu",
        "--num-workers",
        "0",
        "--batch-size",
        "4",
    )
    hypos = [line for line in out.stdout.splitlines() if line.startswith("H-")]
    sources = {
        line.split("\t")[0][2:]: line.split("\t")[1].split()
        for line in out.stdout.splitlines()
        if line.startswith("S-")
    }
    assert len(hypos) == len(sources) > 0
    for line in hypos:
        index, _, text = line.split("\t")
        assert text.split()[:4] == sources[index[2:]][:4]  # the forced prefix is kept


def test_fairseq_interactive_continues_a_prompt(trained_lm):
    data, checkpoint, _ = trained_lm
    out = fairseq_cli(
        "fairseq-interactive",
        data,
        "--task",
        "language_modeling",
        "--user-dir",
        REPO / "user_dir",
        "--path",
        checkpoint,
        "--beam",
        "1",
        "--max-len-b",
        "10",
        "--cpu",
        input="w1 w2 w3\nw5\n",
    )
    hypos = [line.split("\t")[2].split() for line in out.stdout.splitlines() if line.startswith("H-")]
    assert len(hypos) == 2 and hypos[0][:3] == ["w1", "w2", "w3"] and len(hypos[0]) > 3 and hypos[1][0] == "w5"


@pytest.mark.parametrize("recipe", ["mega_wikitext103", "mega_enwik8"])
def test_hydra_recipes_train(recipe, lm_data, tmp_path):
    """The configs/lm recipes run under fairseq-hydra-train (scaled down by overrides to a few updates)."""
    small = [
        "model.decoder_layers=1",
        "model.decoder_embed_dim=16",
        "model.decoder_hidden_dim=32",
        "model.decoder_ffn_embed_dim=32",
        "model.decoder_z_dim=8",
        "model.decoder_chunk_size=8",
        "task.tokens_per_sample=32",
        "dataset.max_tokens=256",
        "optimization.max_update=2",
        "common.cpu=true",
        "lr_scheduler.warmup_updates=1",
        "lr_scheduler.total_num_update=2",
    ]
    if recipe == "mega_wikitext103":
        small += ["model.adaptive_input_cutoff='20,30'", "model.adaptive_softmax_cutoff='20,30'"]
    proc = fairseq_cli(
        "fairseq-hydra-train",
        "--config-dir",
        REPO / "configs/lm",
        "--config-name",
        recipe,
        f"task.data={lm_data}",
        f"common.user_dir={REPO / 'user_dir'}",
        f"checkpoint.save_dir={tmp_path}",
        f"hydra.run.dir={tmp_path}",
        *small,
    )
    assert (tmp_path / "checkpoint_last.pt").exists(), proc.stderr[-2000:]


def test_restoring_a_checkpoint_of_another_architecture_is_refused(lm_data, tmp_path):
    other = tmp_path / "transformer"
    fairseq_cli(
        "fairseq-train",
        lm_data,
        "--task",
        "language_modeling",
        "--arch",
        "transformer_lm",
        "--decoder-layers",
        "1",
        "--decoder-embed-dim",
        "16",
        "--decoder-ffn-embed-dim",
        "16",
        "--decoder-attention-heads",
        "2",
        "--tokens-per-sample",
        "32",
        "--max-tokens",
        "256",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--max-update",
        "1",
        "--cpu",
        "--num-workers",
        "0",
        "--save-dir",
        other,
        "--no-epoch-checkpoints",
    )
    proc = fairseq_cli(
        "fairseq-train",
        lm_data,
        *LM_TRAIN_ARGS,
        "--max-update",
        "2",
        "--save-dir",
        tmp_path / "mega",
        "--restore-file",
        other / "checkpoint_last.pt",
        check=False,
    )
    assert proc.returncode != 0
    assert "Cannot load model parameters from checkpoint" in proc.stderr and "architectures match" in proc.stderr
