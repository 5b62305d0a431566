"""Pipelines shipped with a Mega export by ``mega-export-hf`` (``custom_pipelines`` in ``config.json``), for the
tasks transformers 5.x removed (question-answering, translation, text2text-generation); one implementation for
transformers 4.57 and 5.x, so the same inputs give the same outputs on both.  Imports: torch and transformers.

    pipeline("question-answering", model=DIR, trust_remote_code=True)(question=..., context=...)
        -> {"score", "start", "end", "answer"}
    pipeline("translation", model=DIR, trust_remote_code=True)(text, num_beams=4, ...)  -> [{"translation_text"}]
    pipeline("text2text-generation", model=DIR, trust_remote_code=True)(text, ...)      -> [{"generated_text"}]

Question answering follows mega_fairseq's extractive QA (`mega_extractive_qa`, `qa_inference`): the input is the
tokenizer's pair ``<s> question </s> </s> context </s>``; a model with token-type embeddings gets fairseq's types
(0 up to and including the first separator, 1 after it); a pair longer than ``max_seq_len`` (default: the
tokenizer's ``model_max_length``) is cut into context windows that overlap by ``doc_stride`` tokens (transformers'
meaning of doc_stride; at most half a window).  The answer is the span (s, e) over context
tokens with s <= e and e - s < ``max_answer_len`` that maximises start_logit[s] + end_logit[e] (the first window
and the first span win ties); ``score`` is softmax(start)[s] * softmax(end)[e] over that window's context tokens,
and ``start``/``end`` are character offsets into the context (the tokenizer's offsets; a fast tokenizer is needed).

Translation / text2text-generation: the text is encoded by the tokenizer (an export's translation tokenizer appends
``</s>`` as fairseq's source does), ``model.generate`` runs with every other keyword argument passed through
(``num_beams``, ``max_new_tokens``, ``do_sample``, ...), and the ids are decoded with skip_special_tokens.
"""

from typing import Dict, List

import torch
from transformers import Pipeline


def _as_list(inputs):
    return (list(inputs), True) if isinstance(inputs, (list, tuple)) else ([inputs], False)


class MegaQuestionAnsweringPipeline(Pipeline):
    """Extractive question answering: question + context -> {"score", "start", "end", "answer"}."""

    _load_tokenizer = True
    _load_feature_extractor = False
    _load_image_processor = False
    _load_processor = False

    def _sanitize_parameters(self, top_k=None, max_answer_len=None, doc_stride=None, max_seq_len=None, **kwargs):
        preprocess = {k: v for k, v in (("doc_stride", doc_stride), ("max_seq_len", max_seq_len)) if v is not None}
        postprocess = {k: v for k, v in (("top_k", top_k), ("max_answer_len", max_answer_len)) if v is not None}
        return preprocess, {}, postprocess

    def __call__(self, *args, **kwargs):
        """``pipe(question=Q, context=C)``, ``pipe({"question": Q, "context": C})``, ``pipe(Q, C)`` or lists of them
        (each answered on its own); returns a dict per example (a list of ``top_k`` dicts when ``top_k > 1``)."""
        question, context = kwargs.pop("question", None), kwargs.pop("context", None)
        if question is not None or context is not None:
            if question is None or context is None or args:
                raise ValueError("pass both question= and context= (or dicts with both keys)")
            if isinstance(question, (list, tuple)) != isinstance(context, (list, tuple)):
                raise ValueError("question and context must both be strings or both be lists of the same length")
            if isinstance(question, (list, tuple)):
                if len(question) != len(context):
                    raise ValueError(f"{len(question)} questions but {len(context)} contexts")
                inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
            else:
                inputs = {"question": question, "context": context}
        elif len(args) == 2 and all(isinstance(a, str) for a in args):
            inputs = {"question": args[0], "context": args[1]}
        elif len(args) == 1:
            inputs = args[0]
        else:
            raise ValueError("question answering takes question= and context= (or a dict / list of dicts)")
        items, many = _as_list(inputs)
        results = []
        for item in items:
            if not isinstance(item, dict) or not {"question", "context"} <= set(item):
                raise ValueError(f"each input needs a question and a context, got {item!r}")
            results.append(super().__call__(dict(item), **kwargs))
        return results if many else results[0]

    def preprocess(self, example, doc_stride=128, max_seq_len=None):
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                "question answering needs a fast tokenizer (character offsets): load it with use_fast=True"
            )
        question, context = example["question"].strip(), example["context"]
        limit = max_seq_len or tokenizer.model_max_length
        windowed = limit is not None and limit < 1_000_000
        stride = 0
        if windowed:
            room = limit - len(tokenizer(question, add_special_tokens=False)["input_ids"])
            room -= tokenizer.num_special_tokens_to_add(pair=True)
            if room < 1:
                raise ValueError(f"the question does not leave room for context in {limit} tokens (max_seq_len)")
            stride = min(doc_stride, room // 2)
        encoding = tokenizer(
            question,
            context,
            truncation="only_second" if windowed else False,
            max_length=limit if windowed else None,
            stride=stride,
            return_overflowing_tokens=windowed,
            return_offsets_mapping=True,
            padding=True,
        )
        ids = encoding["input_ids"]
        ids = ids if isinstance(ids[0], list) else [ids]
        offsets = encoding["offset_mapping"]
        offsets = offsets if isinstance(offsets[0], list) else [offsets]
        context_masks = [
            [sid == 1 for sid in encoding.sequence_ids(w)] for w in range(len(ids))
        ]  # sequence 1 = the context
        input_ids = torch.tensor(ids)
        mask = encoding["attention_mask"]
        inputs = {"input_ids": input_ids, "attention_mask": torch.tensor(mask if isinstance(mask[0], list) else [mask])}
        if getattr(self.model.config, "add_token_type_embeddings", False):
            separator = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            is_sep = input_ids.eq(separator).long()
            inputs["token_type_ids"] = ((is_sep.cumsum(dim=1) - is_sep) > 0).long()
        return {
            "inputs": inputs,
            "context_mask": torch.tensor(context_masks),
            "offsets": offsets,
            "context": context,
        }

    def _forward(self, model_inputs):
        out = self.model(**model_inputs["inputs"])
        return {
            "start": out.start_logits,
            "end": out.end_logits,
            "context_mask": model_inputs["context_mask"],
            "offsets": model_inputs["offsets"],
            "context": model_inputs["context"],
        }

    def postprocess(self, model_outputs, top_k=1, max_answer_len=15):
        context = model_outputs["context"]
        candidates = []
        for w, (start, end) in enumerate(zip(model_outputs["start"], model_outputs["end"])):
            positions = model_outputs["context_mask"][w].nonzero().flatten()
            if positions.numel() == 0:
                continue
            s_logits, e_logits = start[positions].double(), end[positions].double()
            scores = s_logits[:, None] + e_logits[None, :]  # (n, n): [start, end]
            n = positions.numel()
            offset = torch.arange(n)[None, :] - torch.arange(n)[:, None]
            scores = scores.masked_fill((offset < 0) | (offset >= max_answer_len), float("-inf"))
            probs = torch.softmax(s_logits, 0)[:, None] * torch.softmax(e_logits, 0)[None, :]
            flat = scores.flatten()
            for k in torch.argsort(flat, descending=True, stable=True)[:top_k].tolist():
                if flat[k] == float("-inf"):
                    break
                s, e = positions[k // n].item(), positions[k % n].item()
                char_start = model_outputs["offsets"][w][s][0]
                char_end = model_outputs["offsets"][w][e][1]
                candidates.append((flat[k].item(), probs.flatten()[k].item(), char_start, char_end))
        candidates.sort(key=lambda c: -c[0])  # stable: the first window wins ties
        answers = []
        for _, prob, char_start, char_end in candidates:
            text = context[char_start:char_end]
            char_start += len(text) - len(text.lstrip())  # sentencepiece offsets may include the word's space
            answer = {"score": prob, "start": char_start, "end": char_end, "answer": context[char_start:char_end]}
            if answer not in answers:
                answers.append(answer)
            if len(answers) == top_k:
                break
        if not answers:
            answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
        return answers[0] if top_k == 1 else answers


class MegaText2TextGenerationPipeline(Pipeline):
    """text -> ``model.generate`` -> [{"generated_text"}] (one dict per returned sequence)."""

    _load_tokenizer = True
    _load_feature_extractor = False
    _load_image_processor = False
    _load_processor = False
    return_name = "generated"

    def _sanitize_parameters(self, truncation=None, clean_up_tokenization_spaces=None, return_tensors=None, **generate):
        preprocess = {} if truncation is None else {"truncation": truncation}
        postprocess = {"return_tensors": bool(return_tensors)}
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess, generate, postprocess

    def __call__(self, inputs, **kwargs):
        """A text or a list of texts (each generated on its own); returns a list of dicts per text."""
        items, many = _as_list(inputs)
        results = [super(MegaText2TextGenerationPipeline, self).__call__(item, **kwargs) for item in items]
        return results if many else results[0]

    def preprocess(self, text, truncation=False):
        if not isinstance(text, str):
            raise ValueError(f"{self.task or 'this pipeline'} takes a text (or a list of texts), got {type(text)}")
        return dict(self.tokenizer(text, truncation=truncation, return_tensors="pt"))

    def _forward(self, model_inputs, **generate_kwargs):
        inputs = {k: v for k, v in model_inputs.items() if k in ("input_ids", "attention_mask")}
        return {"output_ids": self.model.generate(**inputs, **generate_kwargs)}

    def postprocess(self, model_outputs, return_tensors=False, clean_up_tokenization_spaces=False) -> List[Dict]:
        rows = []
        for ids in model_outputs["output_ids"]:
            if return_tensors:
                rows.append({f"{self.return_name}_token_ids": ids})
            else:
                text = self.tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                )
                rows.append({f"{self.return_name}_text": text})
        return rows


class MegaTranslationPipeline(MegaText2TextGenerationPipeline):
    """text -> ``model.generate`` -> [{"translation_text"}]."""

    return_name = "translation"
