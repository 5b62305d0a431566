"""Run by tests/test_hf_remote_code.py under another transformers (e.g. .venv-hf5 with transformers 5.23, which has
no Mega and no fairseq): loads an export with trust_remote_code=True and compares with reference tensors.

    python tests/hf_remote_check.py EXPORT_DIR REFERENCE.pt   -> prints one JSON line of results
"""

import json
import sys

import torch
import transformers


def main(export_dir: str, reference: str):
    ref = torch.load(reference, weights_only=True)
    auto = getattr(transformers, ref["auto_class"])
    model = auto.from_pretrained(export_dir, trust_remote_code=True).eval()
    out = {"transformers": transformers.__version__, "class": type(model).__name__}
    with torch.no_grad():
        logits = model(ref["tokens"]).logits
        out["max_diff"] = (logits - ref["logits"]).abs().max().item()
        if "greedy" in ref:
            prompt = ref["greedy"][:, : ref["prompt_len"]]
            common = dict(attention_mask=torch.ones_like(prompt), eos_token_id=None, pad_token_id=1)
            new = ref["greedy"].size(1) - prompt.size(1)
            greedy = model.generate(prompt, max_new_tokens=new, do_sample=False, **common)
            out["greedy_equal"] = torch.equal(greedy, ref["greedy"])
            beam = model.generate(
                prompt,
                max_new_tokens=new,
                num_beams=3,
                do_sample=False,
                length_penalty=0.0,
                output_scores=True,
                return_dict_in_generate=True,
                **common,
            )
            full = torch.log_softmax(model(beam.sequences).logits.float(), -1)
            picked = full[:, prompt.size(1) - 1 : -1].gather(-1, beam.sequences[:, prompt.size(1) :, None])
            out["beam_score_diff"] = (picked.sum((1, 2)) - beam.sequences_scores).abs().max().item()
            sample = model.generate(prompt, max_new_tokens=new, do_sample=True, top_k=5, **common)
            out["sample_shape"] = list(sample.shape)
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
