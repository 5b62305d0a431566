"""The model code written into every HF export, for ``AutoModel*.from_pretrained(dir, trust_remote_code=True)``.

    configuration_mega_fairseq.py   (template in hf_code/; MODEL_TYPE set per export)
    modeling_mega_fairseq.py        (template in hf_code/; imports every copied module)
    mega_<name>.py                  one per file of this package's torch-only `modules/`, copied at export time
                                    with its relative imports renamed (``from .ema`` -> ``from .mega_ema``)

transformers copies a remote-code file's relative imports as flat ``<name>.py`` files next to it (a
subpackage is not followed: ``from .pkg.mod import`` looks for ``pkg.mod.py``), and transformers 4.x copies
only the modeling file's *direct* relative imports, so the modules are flattened and the modeling file
imports each of them.  ``config.json`` gets an ``auto_map`` naming these classes.

Two kinds of export: ``native`` (``model_type: mega``: transformers 4.x's own Mega classes load it without
model code, and the model code loads it everywhere with trust_remote_code) and ``code`` (``model_type:
mega_fairseq``: configurations transformers' Mega computes wrongly, e.g. rmsnorm; model code only).

    pipeline_mega_fairseq.py        (template in hf_code/; only in exports with a pipeline transformers 5.x removed)

A question-answering export gets ``custom_pipelines`` {"question-answering"} and a translation export
{"translation", "text2text-generation"} in ``config.json`` (`custom_pipelines`): ``pipeline(task, model=DIR,
trust_remote_code=True)`` then runs the shipped class on transformers 4.57 and 5.x alike.  The price: transformers
4.x also asks for ``trust_remote_code=True`` for such a task on a native export (its own QA pipeline is no longer
picked; its translation pipeline never worked with Mega, which has no generate()).
"""

import json
import re
from pathlib import Path
from typing import Dict, List

from .. import modules as _modules_package

TEMPLATES = Path(__file__).resolve().parent / "hf_code"
MODULES_DIR = Path(_modules_package.__file__).resolve().parent
CONFIG_FILE = "configuration_mega_fairseq.py"
MODELING_FILE = "modeling_mega_fairseq.py"
MODULE_PREFIX = "mega_"
NATIVE_MODEL_TYPE = "mega"
CODE_MODEL_TYPE = "mega_fairseq"
PIPELINE_FILE = "pipeline_mega_fairseq.py"
IMPORTS_MARKER = "# MEGA_MODULE_IMPORTS"
RELATIVE_IMPORT = re.compile(r"^(\s*)from \.(\w+) import", flags=re.MULTILINE)

# transformers class of a Target -> the Auto class that loads it
AUTO_CLASS_OF = {
    "MegaModel": "AutoModel",
    "MegaForMaskedLM": "AutoModelForMaskedLM",
    "MegaForCausalLM": "AutoModelForCausalLM",
    "MegaForSequenceClassification": "AutoModelForSequenceClassification",
    "MegaForMultipleChoice": "AutoModelForMultipleChoice",
    "MegaForTokenClassification": "AutoModelForTokenClassification",
    "MegaForQuestionAnswering": "AutoModelForQuestionAnswering",
    "EncoderDecoderModel": "AutoModelForSeq2SeqLM",
}
# Auto class -> class in modeling_mega_fairseq.py
CODE_CLASS = {
    "AutoModel": "MegaFairseqModel",
    "AutoModelForMaskedLM": "MegaFairseqForMaskedLM",
    "AutoModelForCausalLM": "MegaFairseqForCausalLM",
    "AutoModelForSequenceClassification": "MegaFairseqForSequenceClassification",
    "AutoModelForMultipleChoice": "MegaFairseqForMultipleChoice",
    "AutoModelForTokenClassification": "MegaFairseqForTokenClassification",
    "AutoModelForQuestionAnswering": "MegaFairseqForQuestionAnswering",
    "AutoModelForSeq2SeqLM": "MegaFairseqForConditionalGeneration",
}
# transformers class of a Target -> {pipeline task: class in pipeline_mega_fairseq.py} (config.json's custom_pipelines)
PIPELINE_CLASSES = {
    "MegaForQuestionAnswering": {"question-answering": "MegaQuestionAnsweringPipeline"},
    "EncoderDecoderModel": {
        "translation": "MegaTranslationPipeline",
        "text2text-generation": "MegaText2TextGenerationPipeline",
    },
}
ENCODER_AUTO_CLASSES = (
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForMultipleChoice",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
)


def module_files() -> List[Path]:
    """The torch-only building blocks copied into an export (every ``modules/*.py`` but ``__init__.py``)."""
    return sorted(p for p in MODULES_DIR.glob("*.py") if p.name != "__init__.py")


def flat_name(module: str) -> str:
    return MODULE_PREFIX + module


def rename_relative_imports(text: str) -> str:
    """``from .x import`` -> ``from .mega_x import`` (also indented, function-local imports)."""
    return RELATIVE_IMPORT.sub(lambda m: f"{m.group(1)}from .{flat_name(m.group(2))} import", text)


def auto_map(hf_class: str) -> Dict[str, str]:
    """config.json's ``auto_map`` for an export of transformers class `hf_class`."""
    auto = AUTO_CLASS_OF[hf_class]
    if auto == "AutoModelForSeq2SeqLM":
        return {"AutoConfig": "configuration_mega_fairseq.MegaFairseqSeq2SeqConfig", auto: _ref(auto)}
    autos = ("AutoModel", "AutoModelForCausalLM") if auto == "AutoModelForCausalLM" else ENCODER_AUTO_CLASSES
    return {"AutoConfig": "configuration_mega_fairseq.MegaFairseqConfig", **{a: _ref(a) for a in autos}}


def _ref(auto: str) -> str:
    return f"modeling_mega_fairseq.{CODE_CLASS[auto]}"


def custom_pipelines(hf_class: str) -> Dict[str, Dict]:
    """config.json's ``custom_pipelines`` for an export of transformers class `hf_class` ({} when it needs none)."""
    auto = AUTO_CLASS_OF[hf_class]
    return {
        task: {"impl": f"{Path(PIPELINE_FILE).stem}.{name}", "pt": [auto]}
        for task, name in PIPELINE_CLASSES.get(hf_class, {}).items()
    }


def write_model_code(out_dir: Path, native: bool, hf_class: str = None) -> List[str]:
    """Writes the configuration, modeling and module files (and, for an `hf_class` with a shipped pipeline,
    the pipeline file) into `out_dir`; returns their names."""
    out_dir = Path(out_dir)
    model_type = NATIVE_MODEL_TYPE if native else CODE_MODEL_TYPE
    config_text = (TEMPLATES / CONFIG_FILE).read_text(encoding="utf-8")
    config_text = config_text.replace('MODEL_TYPE = "mega"', f"MODEL_TYPE = {model_type!r}", 1)
    names = [CONFIG_FILE, MODELING_FILE]
    (out_dir / CONFIG_FILE).write_text(config_text, encoding="utf-8")
    copied = []
    for path in module_files():
        name = flat_name(path.stem)
        (out_dir / f"{name}.py").write_text(rename_relative_imports(path.read_text(encoding="utf-8")), encoding="utf-8")
        copied.append(name)
        names.append(f"{name}.py")
    modeling = (TEMPLATES / MODELING_FILE).read_text(encoding="utf-8")
    imports = "".join(f"from .{name} import __name__ as _{name}_module  # noqa: F401\n" for name in copied)
    modeling = modeling.replace(IMPORTS_MARKER + " ", "# mega-export-hf: every copied module ", 1)
    modeling = modeling.replace(
        "\n\ntry:  # transformers >= 4.50", "\n" + imports + "\ntry:  # transformers >= 4.50", 1
    )
    (out_dir / MODELING_FILE).write_text(modeling, encoding="utf-8")
    if hf_class in PIPELINE_CLASSES:
        (out_dir / PIPELINE_FILE).write_text((TEMPLATES / PIPELINE_FILE).read_text(encoding="utf-8"), encoding="utf-8")
        names.append(PIPELINE_FILE)
    return names


def add_auto_map(config_file: Path, hf_class: str, native: bool, extra: Dict = None) -> None:
    """Adds the ``auto_map`` (and, for a model-code export, its model_type; for a class with a shipped pipeline,
    ``custom_pipelines``) to a written config.json."""
    config = json.loads(Path(config_file).read_text(encoding="utf-8"))
    config["auto_map"] = auto_map(hf_class)
    if hf_class in PIPELINE_CLASSES:
        config["custom_pipelines"] = custom_pipelines(hf_class)
    if not native:
        config["model_type"] = CODE_MODEL_TYPE + ("_seq2seq" if "encoder" in config and "decoder" in config else "")
        for side in ("encoder", "decoder"):
            if side in config:
                config[side]["model_type"] = CODE_MODEL_TYPE
    config.update(extra or {})
    Path(config_file).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
