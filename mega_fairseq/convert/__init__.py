"""Conversion between this package's models and other formats.

- `common`: dtypes, output tolerance, `ConversionError`, dictionaries, staged (atomic) directory writes,
  probe inputs, the key-pattern compiler;
- `hf_names`: the one name table between our Mega names and transformers' (config fields, state-dict keys, heads);
- `targets`: what each transformers class corresponds to in fairseq (`CausalLMTarget`, `MaskedLMTarget`,
  `EncoderHeadTarget`, `TranslationTarget`);
- `hf_export`: `mega-export-hf`: fairseq checkpoint -> transformers directory, verified;
- `hf_import`: `mega-import-hf`: transformers directory -> fairseq checkpoint, verified;
- `remote_code` (+ templates in `hf_code/`): the model code every export carries (trust_remote_code=True);
- `remote_verify`: a standalone script (torch + transformers only) verifying an export under another interpreter
  (`mega-export-hf --verify-with PYTHON`);
- `tokenizer`: a transformers tokenizer with a fairseq dictionary's ids;
- `original`: `mega-import-original`: checkpoints of the original facebookresearch/mega fork.

Layering: `convert` may import `modules` and `models`; nothing outside `convert` imports it.
This file imports nothing, so `python -m mega_fairseq.convert.hf_export` runs the module once.
"""
