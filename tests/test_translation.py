"""The `mega` encoder-decoder with fairseq's translation task: incremental decoding, beam search, CLI, bad input."""

import os
import shutil

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.sequence_generator import SequenceGenerator

from mega_fairseq.testing import randomize_  # (importing mega_fairseq registers the plugin)

from conftest import REPO, fairseq_cli


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one intra-op thread is faster, and much faster on a busy machine (here and in
    the fairseq commands run by these tests)."""
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if omp is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = omp


def toy_dictionary(n=24):
    dictionary = Dictionary()
    for i in range(n):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def parse(arch, **overrides):
    """The argparse namespace fairseq-train builds for `--arch arch` (the preset applied)."""
    from fairseq import options

    argv = [
        "dummy",
        "--task",
        "translation",
        "--arch",
        arch,
        "--user-dir",
        str(REPO / "user_dir"),
        "-s",
        "en",
        "-t",
        "de",
    ]
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def tiny(src_dict=None, tgt_dict=None, arch="mega_translation_tiny", **overrides):
    """(model in eval mode, source dictionary, target dictionary); the config goes through the model's dataclass
    (MegaTranslationConfig.from_namespace) as in fairseq, without the slow hydra round trip."""
    from fairseq.tasks.translation import TranslationTask

    from mega_fairseq.models.mega_translation import MegaTranslationConfig, MegaTranslationModel

    src_dict = src_dict or toy_dictionary()
    tgt_dict = tgt_dict or src_dict
    sizes = dict(
        encoder_embed_dim=16, encoder_hidden_dim=24, encoder_ffn_embed_dim=20, encoder_z_dim=8, encoder_n_dim=4
    )
    sizes.update(overrides)
    args = parse(arch, **sizes)
    model = MegaTranslationModel.build_model(
        MegaTranslationConfig.from_namespace(args), TranslationTask(args, src_dict, tgt_dict)
    )
    return model.eval(), src_dict, tgt_dict


def batch(dictionary, lengths, seed=0, left_pad=True):
    """(B, max(lengths)) ids ending in eos, padded on the left (fairseq's source convention) or right."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), max(lengths)), dictionary.pad())
    for i, n in enumerate(lengths):
        row = torch.cat(
            [
                torch.randint(dictionary.nspecial, len(dictionary), (n - 1,), generator=gen),
                torch.tensor([dictionary.eos()]),
            ]
        )
        if left_pad:
            out[i, out.size(1) - n :] = row
        else:
            out[i, :n] = row
    return out


def lengths_of(tokens, dictionary):
    return tokens.ne(dictionary.pad()).sum(1)


def close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


VARIANTS = [
    pytest.param(
        dict(attention_activation_fn=act, decoder_chunk_size=chunk, encoder_chunk_size=chunk), id=f"{act}-chunk{chunk}"
    )
    for act in ("softmax", "laplace", "relu2")
    for chunk in (-1, 3)
] + [pytest.param(dict(rel_pos_bias="simple", decoder_chunk_size=3), id="simple-bias")]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_incremental_steps_equal_full_forward(overrides):
    model, d, _ = tiny(**overrides)
    randomize_(model, seed=1)
    src = batch(d, [7, 4, 9], seed=1)
    prev = torch.cat([torch.full((3, 1), d.eos()), batch(d, [8, 8, 8], seed=2)[:, :-1]], dim=1)
    with torch.no_grad():
        full, _ = model(src, lengths_of(src, d), prev)
        encoder_out = model.encoder(src, lengths_of(src, d))
        state = {}
        for t in range(prev.size(1)):
            step, _ = model.decoder(prev[:, : t + 1], encoder_out=encoder_out, incremental_state=state)
            assert step.shape == (3, 1, len(d))
            assert close(step[:, 0], full[:, t]), f"step {t}"


def test_encoder_keys_and_values_are_projected_once_per_sentence():
    model, d, _ = tiny(decoder_chunk_size=2)
    calls = []
    for layer in model.decoder.stack.layers:
        layer.cross_attn.k_proj.register_forward_hook(lambda *_: calls.append("k"))
        layer.cross_attn.v_proj.register_forward_hook(lambda *_: calls.append("v"))
    src = batch(d, [5, 3])
    prev = batch(d, [6, 6], left_pad=False)
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths_of(src, d))
        state = {}
        for t in range(6):
            model.decoder(prev[:, : t + 1], encoder_out=encoder_out, incremental_state=state)
    assert calls.count("k") == calls.count("v") == len(model.decoder.stack.layers)


def test_reorder_incremental_state_reorders_every_cached_tensor():
    model, d, _ = tiny(decoder_chunk_size=4)
    randomize_(model, seed=2)
    src = batch(d, [6, 3, 5], seed=3)
    prev = batch(d, [7, 7, 7], seed=4, left_pad=False)
    order = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        state = {}
        encoder_out = model.encoder(src, lengths_of(src, d))
        model.decoder(prev[:, :6], encoder_out=encoder_out, incremental_state=state)
        before = dict(model.decoder.get_incremental_state(state, "mega_state"))
        model.decoder.reorder_incremental_state_scripting(state, order)
        after = model.decoder.get_incremental_state(state, "mega_state")
        names = {key.split(".", 1)[1] for key in before if key != "position"}
        assert {"ema", "key", "value", "cross_key", "cross_value", "cross_padding"} <= names
        for key, value in before.items():
            expected = value if key == "position" else value.index_select(0, order)
            assert torch.equal(after[key], expected), key
        # the next step continues the reordered sentences exactly
        step, _ = model.decoder(
            prev[order][:, :7],
            encoder_out=model.encoder.reorder_encoder_out(encoder_out, order),
            incremental_state=state,
        )
        full, _ = model(src[order], lengths_of(src[order], d), prev[order])
    assert close(step[:, -1], full[:, 6])


@pytest.mark.parametrize("left_pad", [True, False])
@pytest.mark.parametrize("overrides", [dict(encoder_chunk_size=2, decoder_chunk_size=2), dict(rel_pos_bias="simple")])
def test_source_padding_does_not_change_a_translation(overrides, left_pad):
    model, d, _ = tiny(**overrides)
    randomize_(model, seed=5)
    src = batch(d, [3, 8, 5], seed=6, left_pad=left_pad)
    prev = batch(d, [5, 5, 5], seed=7, left_pad=False)
    with torch.no_grad():
        together, _ = model(src, lengths_of(src, d), prev)
        for i in range(3):
            alone = src[i : i + 1, src[i].ne(d.pad())]
            single, _ = model(alone, lengths_of(alone, d), prev[i : i + 1])
            assert close(single[0], together[i]), i


def run_generator(generator, src, d):
    return generator.generate(
        [generator.model.single_model], {"net_input": {"src_tokens": src, "src_lengths": lengths_of(src, d)}}
    )


@pytest.mark.parametrize(
    "overrides", [dict(decoder_chunk_size=3), dict(attention_activation_fn="laplace", decoder_chunk_size=-1)]
)
def test_beam_search_is_the_same_with_and_without_incremental_state(overrides):
    model, d, _ = tiny(**overrides)
    randomize_(model, seed=8)
    for p in model.decoder.output_projection.parameters():  # moderate logits: beams compete
        p.data.mul_(0.2)
    src = batch(d, [6, 3, 9], seed=9)
    results = []
    for incremental in (True, False):
        generator = SequenceGenerator([model], d, beam_size=5, len_penalty=0.5, max_len_b=10, min_len=2)
        generator.model.has_incremental = incremental
        assert generator.model.has_incremental_states() == incremental
        with torch.no_grad():
            results.append(run_generator(generator, src, d))
    for a_sent, b_sent in zip(*results):
        assert len(a_sent) == len(b_sent) == 5
        assert len({tuple(h["tokens"].tolist()) for h in a_sent}) == 5
        for a, b in zip(a_sent, b_sent):
            assert torch.equal(a["tokens"], b["tokens"])
            assert close(a["positional_scores"], b["positional_scores"], 1e-5)


def test_presets():
    assert {"mega", "mega_wmt_en_de", "mega_wmt_en_de_big", "mega_translation_tiny"} <= set(ARCH_MODEL_REGISTRY)
    base = parse("mega_wmt_en_de")
    assert (
        base.encoder_layers,
        base.encoder_embed_dim,
        base.encoder_hidden_dim,
        base.encoder_z_dim,
        base.encoder_n_dim,
    ) == (6, 512, 1024, 128, 16)
    assert (base.decoder_embed_dim, base.decoder_hidden_dim, base.decoder_ffn_embed_dim) == (512, 1024, 1024)
    assert (base.dropout, base.attention_dropout, base.hidden_dropout, base.rel_pos_bias, base.normalize_before) == (
        0.1,
        0.1,
        0.1,
        "simple",
        False,
    )
    big = parse("mega_wmt_en_de_big")
    assert (
        big.decoder_embed_dim,
        big.decoder_hidden_dim,
        big.decoder_ffn_embed_dim,
        big.decoder_z_dim,
        big.dropout,
    ) == (1024, 2048, 2048, 256, 0.3)
    assert parse("mega_wmt_en_de", encoder_embed_dim=256).decoder_embed_dim == 256  # the decoder follows the encoder


def test_embedding_sharing():
    shared, _, _ = tiny()  # the tiny preset shares all embeddings
    assert (
        shared.encoder.embed_tokens.weight
        is shared.decoder.stack.embed_tokens.weight
        is shared.decoder.output_projection.weight
    )
    src_dict, tgt_dict = toy_dictionary(20), toy_dictionary(28)
    tied, _, _ = tiny(
        src_dict,
        tgt_dict,
        arch="mega",
        share_decoder_input_output_embed=True,
        encoder_layers=1,
        decoder_layers=1,
        decoder_embed_dim=16,
        decoder_hidden_dim=16,
        decoder_ffn_embed_dim=16,
        decoder_z_dim=8,
    )
    assert tied.decoder.output_projection.weight is tied.decoder.stack.embed_tokens.weight
    assert tied.encoder.embed_tokens.weight.shape == (
        len(src_dict),
        16,
    ) and tied.decoder.output_projection.weight.shape == (len(tgt_dict), 16)
    with pytest.raises(ValueError, match="--share-all-embeddings needs one dictionary.*--joined-dictionary"):
        tiny(src_dict, tgt_dict)
    with pytest.raises(ValueError, match="--encoder-embed-dim \\(16\\) == --decoder-embed-dim \\(32\\)"):
        tiny(decoder_embed_dim=32)


def test_source_longer_than_supported():
    model, d, _ = tiny(max_source_positions=8)
    assert model.max_positions() == (8, 1024)
    src = batch(d, [9])
    with pytest.raises(
        ValueError, match="source of 9 tokens is longer than this model supports \\(--max-source-positions 8\\)"
    ):
        model(src, lengths_of(src, d), src[:, :2])


def test_checkpoint_dictionaries_must_match():
    model, d, _ = tiny()
    state = model.state_dict()
    bigger, _, _ = tiny(toy_dictionary(40))
    with pytest.raises(
        ValueError, match="checkpoint's source dictionary has 28 symbols but the task's has 44.*--srcdict"
    ):
        bigger.load_state_dict(state)
    shuffled = Dictionary()
    for i in reversed(range(24)):
        shuffled.add_symbol(f"w{i}")
    other, _, _ = tiny(shuffled)
    with pytest.raises(ValueError, match="source dictionary has the checkpoint's size but other symbols"):
        other.load_state_dict(state)
    same, _, _ = tiny(toy_dictionary())
    same.load_state_dict(state)


# ---- the command-line tools on a toy task: translate w_i -> w_(i+1) in reverse order ----


def write_toy_parallel(text_dir, counts=None, seed=0):
    text_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for split, count in (counts or {"train": 400, "valid": 20, "test": 12}).items():
        src_lines, tgt_lines = [], []
        for _ in range(count):
            ids = torch.randint(0, 20, (int(torch.randint(3, 8, (1,), generator=gen)),), generator=gen).tolist()
            src_lines.append(" ".join(f"w{i}" for i in ids))
            tgt_lines.append(" ".join(f"w{i + 1}" for i in reversed(ids)))
        (text_dir / f"{split}.en").write_text("\n".join(src_lines) + "\n")
        (text_dir / f"{split}.de").write_text("\n".join(tgt_lines) + "\n")


def preprocess(text_dir, dest, *extra):
    fairseq_cli(
        "fairseq-preprocess",
        "-s",
        "en",
        "-t",
        "de",
        "--trainpref",
        text_dir / "train",
        "--validpref",
        text_dir / "valid",
        "--testpref",
        text_dir / "test",
        "--destdir",
        dest,
        "--joined-dictionary",
        *extra,
    )
    return dest


TRAIN_ARGS = [
    "--task",
    "translation",
    "--user-dir",
    REPO / "user_dir",
    "--arch",
    "mega_translation_tiny",
    "--encoder-chunk-size",
    "4",
    "--decoder-chunk-size",
    "4",
    "--criterion",
    "label_smoothed_cross_entropy",
    "--label-smoothing",
    "0.1",
    "--optimizer",
    "adam",
    "--lr",
    "5e-3",
    "--max-tokens",
    "1024",
    "--cpu",
    "--num-workers",
    "0",
    "--no-epoch-checkpoints",
    "--log-format",
    "simple",
    "--log-interval",
    "10",
    "--seed",
    "1",
    "--dropout",
    "0.0",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    write_toy_parallel(root / "text")
    data = preprocess(root / "text", root / "bin")
    proc = fairseq_cli("fairseq-train", data, *TRAIN_ARGS, "--max-update", "40", "--save-dir", root / "ckpt")
    return root, data, root / "ckpt" / "checkpoint_last.pt", proc.stdout + proc.stderr


def test_fairseq_train_loss_falls(trained):
    *_, log = trained
    losses = [
        float(line.split("loss=")[1].split(",")[0])
        for line in log.splitlines()
        if "train_inner" in line and "loss=" in line
    ]
    assert len(losses) >= 3 and losses[-1] < 0.8 * losses[0], losses


def test_fairseq_generate_and_interactive(trained):
    root, data, checkpoint, _ = trained
    common = ["--user-dir", REPO / "user_dir", "--path", checkpoint, "--beam", "5", "--lenpen", "0.5", "--cpu"]
    # fairseq drops a last batch that is not a multiple of --required-batch-size-multiple (default 8)
    gen = fairseq_cli(
        "fairseq-generate",
        data,
        *common,
        "--gen-subset",
        "test",
        "--batch-size",
        "5",
        "--num-workers",
        "0",
        "--required-batch-size-multiple",
        "1",
    )
    hypos = [line for line in gen.stdout.splitlines() if line.startswith("H-")]
    assert len(hypos) == 12 and "BLEU" in gen.stdout
    inter = fairseq_cli("fairseq-interactive", data, *common, "-s", "en", "-t", "de", input="w1 w2 w3\nw7 w5\n")
    outputs = [line.split("\t")[2].split() for line in inter.stdout.splitlines() if line.startswith("H-")]
    assert len(outputs) == 2 and all(outputs)


def test_generate_with_other_dictionaries_is_refused(trained, tmp_path):
    _, data, checkpoint, _ = trained
    other = tmp_path / "bin"
    shutil.copytree(data, other)
    for lang in ("en", "de"):  # a joined dictionary with one more word
        with open(other / f"dict.{lang}.txt", "a") as f:
            f.write("novel 1\n")
    proc = fairseq_cli(
        "fairseq-generate",
        other,
        "--user-dir",
        REPO / "user_dir",
        "--path",
        checkpoint,
        "--gen-subset",
        "test",
        "--cpu",
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "the checkpoint's source dictionary has 32 symbols but the task's has 33" in proc.stderr
        and "--srcdict" in proc.stderr
    )


def test_hydra_recipe_trains(trained, tmp_path):
    """configs/translation/mega_wmt16_en_de.yaml runs under fairseq-hydra-train, scaled down by overrides."""
    _, data, _, _ = trained
    small = [
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "model.encoder_embed_dim=16",
        "model.decoder_embed_dim=16",
        "model.encoder_hidden_dim=16",
        "model.decoder_hidden_dim=16",
        "model.encoder_ffn_embed_dim=16",
        "model.decoder_ffn_embed_dim=16",
        "model.encoder_z_dim=8",
        "model.decoder_z_dim=8",
        "dataset.max_tokens=512",
        "optimization.max_update=2",
        "common.cpu=true",
        "lr_scheduler.warmup_updates=1",
        "lr_scheduler.total_num_update=2",
        "task.max_source_positions=64",
        "task.max_target_positions=64",
    ]
    proc = fairseq_cli(
        "fairseq-hydra-train",
        "--config-dir",
        REPO / "configs/translation",
        "--config-name",
        "mega_wmt16_en_de",
        f"task.data={data}",
        f"common.user_dir={REPO / 'user_dir'}",
        f"checkpoint.save_dir={tmp_path}",
        f"hydra.run.dir={tmp_path}",
        *small,
    )
    assert (tmp_path / "checkpoint_last.pt").exists(), proc.stderr[-2000:]
    assert "bleu" in (proc.stdout + proc.stderr)


@pytest.mark.slow
def test_prepare_wmt16_script_on_a_tiny_fake_raw_dir(tmp_path):
    """scripts/prepare_wmt16_en_de.sh end to end on a few hundred fake WMT lines (spm + fairseq-preprocess)."""
    import subprocess

    raw = tmp_path / "raw"
    write_toy_parallel(raw, {"train": 300, "newstest2013": 10, "newstest2014": 10})
    env = dict(os.environ, VOCAB="24", WORKERS="1", PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/prepare_wmt16_en_de.sh"), str(raw), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(
        (tmp_path / "out" / f"{split}.en-de.{lang}.bin").exists()
        for split in ("train", "valid", "test")
        for lang in ("en", "de")
    )
    missing = subprocess.run(
        ["bash", str(REPO / "scripts/prepare_wmt16_en_de.sh"), str(tmp_path / "nothing"), str(tmp_path / "o2")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "missing or empty" in missing.stderr
