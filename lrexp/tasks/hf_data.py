"""Data for the Hugging Face tasks (lrexp.tasks.hf): text from local files or a ``datasets`` name,
tokenized once into a cache of memory-mapped arrays, so a dataset larger than RAM trains and every
later run (every job of a sweep) starts in milliseconds.

Sources, one code path: a local file or folder (``task.data``: plain text, JSON lines or CSV, told apart
by their suffix) is read here; a ``datasets`` name or folder (``task.dataset``, the optional extra
``lrexp[hf]``) is loaded with ``datasets.load_dataset`` (its own cache, memory-mapped Arrow). Either way
the records are streamed through the tokenizer in batches and appended to ``.npy`` files under
``task.cache_dir``, keyed by everything that decides their contents (the files' sizes and times, or
the dataset's fingerprint; the tokenizer's vocabulary; the columns; the lengths). A cache entry is
written to a temporary folder and renamed into place under a file lock: parallel jobs of a sweep wait
for the first instead of tokenizing the same text twice.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrexp.errors import ConfigError
from lrexp.tasks.text_files import text_files

TOKENIZE_BATCH = 512  # records per tokenizer call
JSON_SUFFIXES, CSV_SUFFIXES = (".jsonl", ".json", ".ndjson"), (".csv", ".tsv")
UNLABELLED = "-1"  # how datasets marks a held-out split's hidden labels (GLUE's test sets): never scored


@dataclass(frozen=True)
class Source:
    """Where the records come from: ``data`` (a local file or folder) or ``dataset`` (a datasets name)."""

    data: str | None
    data_glob: str
    dataset: str | None
    dataset_config: str | None

    def describe(self) -> str:
        return f"task.data={self.data}" if self.data else f"task.dataset={self.dataset}"


def cache_root(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.environ.get("LREXP_CACHE") or Path.home() / ".cache" / "lrexp").expanduser()


# --- reading records -----------------------------------------------------------------------------


def local_files(data: str, data_glob: str) -> list[Path]:
    return text_files(
        data, data_glob, key="task.data", glob_key="task.data_glob", allowed="a text, JSON lines or CSV file, or a folder of them"
    )


def file_records(path: Path, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """A file's records: JSON lines and CSV by their columns, any other text file as one record whose
    first column is the whole text."""
    suffix = path.suffix.lower()
    try:
        if suffix in JSON_SUFFIXES:
            with open(path, encoding="utf-8") as f:
                first = f.read(1)
                f.seek(0)
                if first == "[":
                    try:
                        rows = json.load(f)
                    except json.JSONDecodeError as e:
                        raise ConfigError(
                            "task.data", str(path), f"is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
                        ) from None
                    yield from rows
                    return
                for number, line in enumerate(f, start=1):  # the file's own line numbers, blank lines counted
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ConfigError(
                                "task.data", str(path), f"line {number} is not a JSON record: {e.msg} (column {e.colno})"
                            ) from None
        elif suffix in CSV_SUFFIXES:
            with open(path, encoding="utf-8", newline="") as f:
                yield from csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            yield {columns[0]: path.read_text(encoding="utf-8", errors="replace")}
    except UnicodeDecodeError as e:
        raise ConfigError(
            "task.data", str(path), f"is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}): save it as UTF-8"
        ) from None


def column_check(record: dict[str, Any], columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in record]
    if missing:
        key = "task.label_column" if missing[0] == columns[-1] and len(columns) > 1 and missing[0] != columns[0] else "task.text_column"
        raise ConfigError(key, missing[0], f"{where} has no such column (its columns: {', '.join(map(str, record))})")


def records(source: Source, columns: Sequence[str], split: str) -> Iterator[dict[str, Any]]:
    """Every record of the source's ``split`` ('all' for local files, which have no splits), checked to
    hold ``columns``."""
    if source.data:
        for path in local_files(source.data, source.data_glob):
            for i, record in enumerate(file_records(path, columns)):
                if i == 0 and path.suffix.lower() in JSON_SUFFIXES + CSV_SUFFIXES:
                    column_check(record, columns, str(path))
                yield record
        return
    dataset = load(source)[split]
    column_check({c: None for c in dataset.column_names}, columns, f"{source.dataset} ({split})")
    yield from dataset.select_columns(list(columns))  # row by row, from datasets' memory-mapped Arrow


def load(source: Source) -> Any:
    """The datasets library's DatasetDict for ``task.dataset`` (a hub name, or a local folder of data
    files, loaded by the same call)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("task.dataset", source.dataset, "needs the datasets library: pip install 'lrexp[hf]'") from None
    try:
        loaded = datasets.load_dataset(source.dataset, source.dataset_config)
    except Exception as e:  # FileNotFoundError, DatasetNotFoundError, ConnectionError: all mean the same here
        raise ConfigError(
            "task.dataset", source.dataset, f"cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


def splits_of(source: Source) -> list[str]:
    """The source's own splits: a dataset's (train, validation, test...), or ['all'] for local files."""
    return list(load(source)) if source.dataset and not source.data else ["all"]


def fingerprint(source: Source, split: str) -> str:
    """What the source's contents depend on, cheaply: files' paths, sizes and times; a dataset's own
    fingerprint (datasets hashes its files and processing)."""
    if source.data:
        return json.dumps([(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in local_files(source.data, source.data_glob)])
    return f"{source.dataset}/{source.dataset_config}/{split}/{load(source)[split]._fingerprint}"


# --- the cache -----------------------------------------------------------------------------------


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def tokenizer_id(tokenizer: Any) -> str:
    """What identifies a tokenizer's output: its class, its vocabulary and special tokens."""
    vocab = tokenizer.get_vocab()
    return key_of(type(tokenizer).__name__, sorted(vocab.items()), tokenizer.all_special_tokens)


@contextlib.contextmanager
def building(root: Path, key: str) -> Iterator[Path | None]:
    """The cache entry ``root/key``: yields None when it exists (read it), else a fresh temporary folder
    to fill, renamed into place when the block ends. One process builds; the others wait on the lock."""
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if entry.is_dir():
            yield None
            return
        tmp = root / f"{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class Appender:
    """Rows appended to a flat binary file of a fixed dtype, its shape written beside it when closed: a
    stream of any length, never held in memory whole, read back memory-mapped (``open_array``)."""

    def __init__(self, path: Path, dtype: Any, width: int | None = None) -> None:
        self.path, self.dtype, self.width, self.count = path, np.dtype(dtype), width, 0
        self.file = open(path.with_suffix(".bin"), "wb")

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        self.file.write(rows.tobytes())
        self.count += len(rows)

    def close(self) -> None:
        self.file.close()
        shape = [self.count] if self.width is None else [self.count, self.width]
        self.path.with_suffix(".json").write_text(json.dumps({"dtype": self.dtype.str, "shape": shape}))


def open_array(path: Path) -> np.ndarray:
    """An array an Appender wrote, memory-mapped read-only."""
    meta = json.loads(path.with_suffix(".json").read_text())
    shape = tuple(meta["shape"])
    if not shape[0]:
        return np.empty(shape, dtype=meta["dtype"])
    return np.memmap(path.with_suffix(".bin"), dtype=meta["dtype"], mode="r", shape=shape)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def token_stream(source: Source, tokenizer: Any, text_column: str, split: str, max_tokens: int | None, cache: Path) -> np.ndarray:
    """Every record's text tokenized and joined, an end-of-text token between records (where the
    tokenizer has one), as one memory-mapped array, cut at ``max_tokens``."""
    key = key_of("lm", fingerprint(source, split), tokenizer_id(tokenizer), text_column, max_tokens)
    with building(cache, key) as tmp:
        if tmp is not None:
            out = Appender(tmp / "tokens", token_dtype(len(tokenizer)))
            eos = tokenizer.eos_token_id
            for texts in batched((str(r[text_column]) for r in records(source, [text_column], split)), TOKENIZE_BATCH):
                for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
                    if max_tokens is not None and out.count >= max_tokens:
                        break
                    ids = [*ids, eos] if eos is not None else ids
                    out.append(np.array(ids[: None if max_tokens is None else max_tokens - out.count]))
            out.close()
    return open_array(cache / key / "tokens")


@dataclass
class Examples:
    """Tokenized, padded examples with their labels, memory-mapped."""

    input_ids: np.ndarray  # (n, max_length)
    attention_mask: np.ndarray  # (n, max_length) 0/1
    labels: np.ndarray  # (n,) int64 class ids


def examples(
    source: Source,
    tokenizer: Any,
    text_column: str,
    pair_column: str | None,
    label_column: str,
    split: str,
    max_length: int,
    classes: list[str] | None,
    cache: Path,
) -> tuple[Examples, list[str]]:
    """Every record tokenized to ``max_length`` (truncated, padded) with its label's class id; the
    classes are the labels' sorted distinct values (or ``classes``, fixed by another split)."""
    columns = [text_column, *([pair_column] if pair_column else []), label_column]
    key = key_of("cls", fingerprint(source, split), tokenizer_id(tokenizer), columns, max_length, classes)
    with building(cache, key) as tmp:
        if tmp is not None:
            ids = Appender(tmp / "input_ids", token_dtype(len(tokenizer)), max_length)
            mask = Appender(tmp / "attention_mask", np.uint8, max_length)
            raw_labels = []
            for batch in batched(records(source, columns, split), TOKENIZE_BATCH):
                texts = [str(r[text_column]) for r in batch]
                pairs = [str(r[pair_column]) for r in batch] if pair_column else None
                enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding="max_length")
                ids.append(np.array(enc["input_ids"]))
                mask.append(np.array(enc["attention_mask"]))
                raw_labels += [str(r[label_column]) for r in batch]
            labels_seen = classes or sorted(set(raw_labels), key=_label_order)
            unknown = sorted(set(raw_labels) - set(labels_seen) - {UNLABELLED})
            if unknown:
                raise ConfigError("task.label_column", label_column, f"{split} has labels no other split has: {', '.join(unknown[:5])}")
            index = {c: i for i, c in enumerate(labels_seen)} | ({} if classes is None else {UNLABELLED: -1})
            labels = Appender(tmp / "labels", np.int64)
            labels.append(np.array([index[v] for v in raw_labels], dtype=np.int64))
            labels.close()
            ids.close()
            mask.close()
            (tmp / "classes.json").write_text(json.dumps(labels_seen))
    folder = cache / key
    out = Examples(*(open_array(folder / name) for name in ("input_ids", "attention_mask", "labels")))
    return out, json.loads((folder / "classes.json").read_text())


def _label_order(value: str) -> tuple[int, float | str]:
    """Integer labels in numeric order (0, 1, 2, 10), any others alphabetically after them."""
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def batched(items: Any, n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
