"""Tiny Hugging Face models and real text, made on the spot: nothing is downloaded. A byte-level BPE
tokenizer trained (tokenizers) on Python standard library sources, a 2-layer GPT-2 and a 2-layer BERT
classifier at random init saved with ``save_pretrained``: loading them by path is the code path a hub
name takes. Labelled data: stdlib source lines, labelled comment or code."""

from __future__ import annotations

import csv
import json
import sysconfig
from pathlib import Path

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def stdlib_text(files: int = 30) -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "".join(p.read_text(errors="replace") for p in sorted(stdlib.glob("*.py"))[:files])


def make_models(root: Path, width: int = 32, layers: int = 2, vocab: int = 400, files: int = 30) -> dict[str, Path]:
    """root/gpt (causal LM), root/bert (sequence classifier), root/corpus.txt, root/lines.csv, and
    root/dataset/ (a datasets folder with train/validation/test JSON lines). Tests take the defaults;
    scripts/bench.py a wider model and a larger vocabulary."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    text = stdlib_text(files)
    (root / "corpus.txt").write_text(text)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=vocab, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    eos = tok.eos_token_id
    # No dropout: a run is then a function of its seed and steps alone, whatever the micro-batching.
    gpt = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=width, n_layer=layers, n_head=2, bos_token_id=eos, eos_token_id=eos,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    GPT2LMHeadModel(gpt).save_pretrained(root / "gpt")
    tok.save_pretrained(root / "gpt")
    bert = BertConfig(vocab_size=len(tok), hidden_size=width, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * width,
                      max_position_embeddings=128, num_labels=2, pad_token_id=eos)  # fmt: skip
    BertForSequenceClassification(bert).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    rows = [(s, "comment" if s.startswith("#") else "code") for s in (line.strip() for line in text.splitlines()) if len(s) > 20]
    with open(root / "lines.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows[:3000])
    (root / "dataset").mkdir(exist_ok=True)
    for split, part in (("train", rows[:2000]), ("validation", rows[2000:2400]), ("test", rows[2400:2800])):
        with open(root / "dataset" / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps({"sentence": t, "label": int(lab == "comment")}) + "\n" for t, lab in part)
    return {
        "gpt": root / "gpt",
        "bert": root / "bert",
        "corpus": root / "corpus.txt",
        "lines": root / "lines.csv",
        "dataset": root / "dataset",
    }
