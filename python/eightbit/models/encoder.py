"""A BERT-style sentence encoder as an eightbit Graph, from NumPy weights in HuggingFace BERT naming.

    g = bert_encoder(weights, layers=6, heads=12, seq_len=128, hidden=384, ffn=1536)
    out = g.run({"x": x, "mask": mask})
    out["pooled"]              # [N, 1, hidden]: mask-aware mean of the last hidden states
    out["last_hidden_state"]   # [N, T, hidden]

Inputs (the graph starts after BERT's embedding layer, which is a table look-up: ``embed_tokens``
computes it in NumPy):

* ``x`` [N, T, hidden]: the embedding output (word + position + token-type embeddings, LayerNorm);
* ``mask`` [N, 1, 1, T]: the additive attention mask HuggingFace builds: 0 for a token, a large
  negative number for padding (-1e4 in BERT's original code, ``finfo(float32).min`` in newer
  ``transformers``; anything <= -1e3 pools correctly, see below). It must be finite.

Each layer ``i`` (post-LN, as BERT): ``h = LN(h + attention(h))``, ``h = LN(h + FFN(h))`` with

    q, k, v   = linear(h)                          [N, T, H] -> reshape [N, T, heads, d]
    q -> transpose (0, 2, 1, 3), k -> transpose (0, 2, 3, 1), v -> transpose (0, 2, 1, 3)
    scores    = bmm(q, k) * (1 / sqrt(d)) + mask   [N, heads, T, T]; mask broadcast over heads, rows
    context   = bmm(softmax(scores, -1), v) -> transpose (0, 2, 1, 3) -> reshape [N, T, H] -> linear
    FFN       = linear(gelu(linear(h)))            exact (erf) GELU, as BERT

Node names are the weights' module names under ``name`` (``encoder.layer.0.attention.self.query``,
``encoder.layer.0.attention.output.dense``, ``encoder.layer.0.intermediate.dense``,
``encoder.layer.0.output.LayerNorm``, ...) plus suffixes for the weightless nodes
(``...attention.self.mask_add``, ``...attention.output.residual``, ``...output.residual``,
``...intermediate.gelu``, ``...attention.self.softmax``, ...).

Pooling (``pooling="mean"``, sentence-transformers' ``mean_tokens``): the mean of the last hidden
states over the tokens the mask keeps. The graph derives the 0 / 1 keep weights from the additive
mask with float ops only: ``keep = 1 / (1 - mask)^2`` is exactly 1 for mask 0, ~1e-8 for -1e4, at
most 1e-6 for mask <= -1e3 and 0 (underflow, no overflow) for ``finfo.min``; ``count = keep @ 1``,
``pooled = (keep / count) @ h``. The graph IR has no reduction and no slicing, and a bmm keeps
rank 3, so ``pooled`` is [N, 1, hidden] (take ``[:, 0]``): a final reshape to [N, hidden] would be
one more node that static quantization quantizes (eb.quantize lowers every reshape to a byte copy
of an int8 tensor). The only quantizable node of the pooling is the reshape of the mask to
[N, 1, T], which is exact in uint8 for a two-valued mask (both values are the ends of its range).
With pooling, ``pooled`` is the first output (what eightbit's accuracy metrics compare) and
``last_hidden_state`` the second; ``pooling=None`` gives ``last_hidden_state`` alone.
"""
from __future__ import annotations

import math

import numpy as np

from ..graph import Graph

__all__ = ["bert_encoder", "embed_tokens", "encoder_config", "synthetic_bert_weights",
           "synthetic_encoder_inputs", "LAYER_KEYS"]

LN_EPS = 1e-12            # BERT's layer_norm_eps
MASK_PAD = -1e4           # the additive mask value for padding that synthetic_encoder_inputs uses

# per-layer weight names under "encoder.layer.{i}." (each has .weight and .bias)
LAYER_KEYS = ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "attention.output.LayerNorm",
              "intermediate.dense", "output.dense", "output.LayerNorm")


def _strip(weights: dict) -> dict:
    """Weights keyed without a leading "bert." (BertModel inside a task model), as float32."""
    out = {}
    for k, v in weights.items():
        out[k[5:] if k.startswith("bert.") else k] = np.asarray(v, np.float32)
    return out


def encoder_config(weights: dict) -> dict:
    """layers, hidden and ffn read off the weight shapes (heads cannot be: it is not in them)."""
    w = _strip(weights)
    layers = 0
    while f"encoder.layer.{layers}.attention.self.query.weight" in w:
        layers += 1
    if layers == 0:
        raise ValueError("weights: no encoder.layer.0.attention.self.query.weight")
    hidden = w["encoder.layer.0.attention.self.query.weight"].shape[0]
    ffn = w["encoder.layer.0.intermediate.dense.weight"].shape[0]
    return {"layers": layers, "hidden": hidden, "ffn": ffn}


def bert_encoder(weights: dict, *, layers: int, heads: int, seq_len: int, hidden: int, ffn: int,
                 name: str = "encoder", pooling="mean", eps: float = LN_EPS, batch=None) -> Graph:
    """The encoder as an eightbit Graph (see the module docstring): inputs ``x`` [batch, seq_len,
    hidden] and ``mask`` [batch, 1, 1, seq_len], outputs ``pooled`` (with ``pooling="mean"``) and
    ``last_hidden_state``. ``weights``: NumPy arrays in HuggingFace BERT naming
    (``encoder.layer.{i}.attention.self.query.weight`` ..., an optional ``bert.`` prefix is
    ignored; embedding tables may be present and are not used). Only the first ``layers`` layers
    are built. ``batch``: None (any batch size) or a fixed int."""
    if hidden % heads:
        raise ValueError(f"bert_encoder: hidden={hidden} is not a multiple of heads={heads}")
    if pooling not in ("mean", None):
        raise ValueError(f"bert_encoder: pooling must be 'mean' or None, got {pooling!r}")
    w = _strip(weights)
    d = hidden // heads
    T = seq_len

    def get(key, shape):
        if key not in w:
            raise KeyError(f"bert_encoder: weight {key!r} is missing")
        a = w[key]
        if a.shape != shape:
            raise ValueError(f"bert_encoder: {key} has shape {a.shape}, expected {shape}")
        return a

    def linear(x, module, n_out, n_in):
        p = f"encoder.{module}"
        return g.linear(x, get(f"{p}.weight", (n_out, n_in)), get(f"{p}.bias", (n_out,)),
                        name=f"{name}.{module}")

    def layer_norm(x, module):
        p = f"encoder.{module}"
        return g.layer_norm(x, hidden, get(f"{p}.weight", (hidden,)), get(f"{p}.bias", (hidden,)), eps=eps,
                            name=f"{name}.{module}")

    g = Graph(name)
    h = g.input("x", (batch, T, hidden))
    mask = g.input("mask", (batch, 1, 1, T))
    for i in range(layers):
        L = f"layer.{i}"
        att = f"{name}.{L}.attention.self"

        def heads_of(x, which, perm):
            t = linear(x, f"{L}.attention.self.{which}", hidden, hidden)
            t = g.reshape(t, (T, heads, d), name=f"{att}.{which}.reshape")
            return g.transpose(t, perm, name=f"{att}.{which}.transpose")

        q = heads_of(h, "query", (0, 2, 1, 3))              # [N, heads, T, d]
        k = heads_of(h, "key", (0, 2, 3, 1))                # [N, heads, d, T]
        v = heads_of(h, "value", (0, 2, 1, 3))              # [N, heads, T, d]
        s = g.bmm(q, k, name=f"{att}.scores")               # [N, heads, T, T]
        s = g.mul(s, np.float32(1.0 / math.sqrt(d)), name=f"{att}.scale")
        s = g.add(s, mask, name=f"{att}.mask_add")
        p = g.softmax(s, -1, name=f"{att}.softmax")
        c = g.bmm(p, v, name=f"{att}.context")              # [N, heads, T, d]
        c = g.transpose(c, (0, 2, 1, 3), name=f"{att}.context.transpose")
        c = g.reshape(c, (T, hidden), name=f"{att}.context.reshape")
        a = linear(c, f"{L}.attention.output.dense", hidden, hidden)
        a = g.add(a, h, name=f"{name}.{L}.attention.output.residual")
        h = layer_norm(a, f"{L}.attention.output.LayerNorm")
        f = linear(h, f"{L}.intermediate.dense", ffn, hidden)
        f = g.gelu(f, name=f"{name}.{L}.intermediate.gelu")
        f = linear(f, f"{L}.output.dense", hidden, ffn)
        f = g.add(f, h, name=f"{name}.{L}.output.residual")
        h = layer_norm(f, f"{L}.output.LayerNorm")
    if pooling == "mean":
        m = g.reshape(mask, (1, T), name=f"{name}.pooler.mask")                    # [N, 1, T], int8-exact
        one = g.add(g.mul(m, np.float32(0.0), name=f"{name}.pooler.zero"), np.float32(1.0),
                    name=f"{name}.pooler.one")                                       # 1
        den = g.add(g.mul(m, np.float32(-1.0), name=f"{name}.pooler.neg"), np.float32(1.0),
                    name=f"{name}.pooler.den")                                       # 1 - mask >= 1
        keep = g.div(g.div(one, den, name=f"{name}.pooler.inv"), den,
                     name=f"{name}.pooler.keep")                                     # [N, 1, T]: 1 / (1 - mask)^2
        ones = g.add(g.mul(g.transpose(keep, (0, 2, 1), name=f"{name}.pooler.keep_t"), np.float32(0.0),
                           name=f"{name}.pooler.zero_t"), np.float32(1.0), name=f"{name}.pooler.ones")
        count = g.bmm(keep, ones, name=f"{name}.pooler.count")                      # [N, 1, 1]
        wts = g.div(keep, count, name=f"{name}.pooler.weights")                     # [N, 1, T]
        g.output(g.bmm(wts, h, name="pooled"))                                      # [N, 1, hidden]
    g.output(g.identity(h, name="last_hidden_state"))     # removed by eb.quantize's preparation
    return g


def embed_tokens(weights: dict, ids, token_type_ids=None, *, eps: float = LN_EPS) -> np.ndarray:
    """BERT's embedding layer in NumPy: ``LayerNorm(word[ids] + position[0..T) + token_type[tt])``
    with ``embeddings.word_embeddings.weight``, ``embeddings.position_embeddings.weight``,
    ``embeddings.token_type_embeddings.weight`` and ``embeddings.LayerNorm.{weight,bias}``.
    ``ids`` [N, T] ints; token types default to 0. Returns float32 [N, T, hidden]: the ``x`` of
    ``bert_encoder``."""
    w = _strip(weights)
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"embed_tokens: ids must be [N, T], got shape {ids.shape}")
    tt = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
    e = (w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + w["embeddings.position_embeddings.weight"][: ids.shape[1]][None]
         + w["embeddings.token_type_embeddings.weight"][tt])
    mu = e.mean(-1, keepdims=True)
    var = ((e - mu) ** 2).mean(-1, keepdims=True)
    y = (e - mu) / np.sqrt(var + eps) * w["embeddings.LayerNorm.weight"] + w["embeddings.LayerNorm.bias"]
    return y.astype(np.float32)


def additive_mask(attention_mask, pad_value: float = MASK_PAD) -> np.ndarray:
    """[N, T] 1 / 0 attention mask -> the [N, 1, 1, T] additive mask (0 / ``pad_value``)."""
    m = np.asarray(attention_mask)
    return np.where(m[:, None, None, :] > 0, 0.0, pad_value).astype(np.float32)


# ---- trained-like synthetic weights and inputs ----------------------------------------------------

CLS_ID, SEP_ID, PAD_ID = 1, 2, 0   # the special token ids of the synthetic vocabulary


def synthetic_bert_weights(layers: int = 6, hidden: int = 384, heads: int = 12, ffn: int = 1536, seed: int = 0,
                           *, vocab: int = 2000, max_positions: int = 512, massive: float = 200.0,
                           center: bool = True) -> dict:
    """Weights in HuggingFace BERT naming whose residual stream looks like a trained BERT's.

    Measured on all-MiniLM-L6-v2 (models/minilm.py): in layers 0-3 one FFN neuron fires (GELU
    output ~25) only at the [CLS] token and ``output.dense`` multiplies it by a weight of ~8 into
    one hidden dimension (99), so ``output.dense`` and the residual add after it reach ~120-220 there
    while every other value is within ~+-10 (median |x| ~0.3); the LayerNorm squashes it back to
    ~10. The last two layers are tame (+-20-40). ``attention.output.LayerNorm`` gammas are ~2-3x the
    median in a handful of dimensions. Per-tensor uint8 over the ~200-wide range leaves ordinary
    values a code or two: the issue's accuracy loss.

    Built the same way here: linear weights normal with std gain/sqrt(fan_in) (1/64 of the output
    rows 2-4x heavier), small biases; LayerNorm gammas ~N(0.65, 0.08) (``attention.output``: x2-3 in
    three other dimensions), betas ~N(0, 0.05); the [CLS] word embedding is large in the outlier
    dimension ``d``; in each layer but the last two (at least layer 0) an FFN neuron reads ``d``
    (fires only where it is large: [CLS]) and writes ``massive`` (default 200) into ``d``. Embedding
    tables (``vocab`` words, ids 0/1/2 = [PAD]/[CLS]/[SEP], ``max_positions`` positions smooth in
    position, 2 token types) go with ``synthetic_encoder_inputs`` / ``embed_tokens``. ``heads`` only
    checks that ``hidden`` divides. ``center``: the last LayerNorm's bias is set so that the mean
    last hidden state over 16 synthetic sequences is 0, as contrastive sentence-embedding training
    leaves it (without it, every pooled embedding shares one large component and the cosine
    between an int8 and a float embedding hides most of the error). ``"meta.outlier_dim"`` holds the outlier dimension (a 1-element
    array, not a BERT weight: bert_encoder and embed_tokens ignore it)."""
    if hidden % heads:
        raise ValueError(f"synthetic_bert_weights: hidden={hidden} is not a multiple of heads={heads}")
    rng = np.random.default_rng(seed)
    d = int(rng.integers(hidden))                      # the massive-activation dimension
    minor = rng.choice(np.setdiff1d(np.arange(hidden), [d]), 3, replace=False)   # milder outliers

    def dense(n_out, n_in, gain=1.0):
        wt = rng.standard_normal((n_out, n_in)) * (gain / math.sqrt(n_in))
        heavy = rng.choice(n_out, max(1, n_out // 64), replace=False)     # heavier-tailed rows
        wt[heavy] *= rng.uniform(2.0, 4.0, (len(heavy), 1))
        return wt.astype(np.float32), (rng.standard_normal(n_out) * 0.05).astype(np.float32)

    def ln(outliers: bool):
        gamma = rng.normal(0.65, 0.08, hidden)
        beta = rng.normal(0.0, 0.05, hidden)
        if outliers:
            gamma[minor] *= rng.uniform(2.0, 3.0, 3)
        return gamma.astype(np.float32), beta.astype(np.float32)

    w = {}
    word = rng.standard_normal((vocab, hidden)) * 0.05
    word[CLS_ID, d] = 1.0                              # [CLS] stands out in d (MiniLM's embedding output: ~7)
    pos = np.cumsum(rng.standard_normal((max_positions, hidden)) * 0.01, axis=0)
    w["embeddings.word_embeddings.weight"] = word.astype(np.float32)
    w["embeddings.position_embeddings.weight"] = pos.astype(np.float32)
    w["embeddings.token_type_embeddings.weight"] = (rng.standard_normal((2, hidden)) * 0.02).astype(np.float32)
    w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"] = ln(False)
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for which, gain in (("query", 2.0), ("key", 2.0), ("value", 1.0)):
            w[p + f"attention.self.{which}.weight"], w[p + f"attention.self.{which}.bias"] = dense(hidden, hidden, gain)
        w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"] = dense(hidden, hidden, 0.7)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = ln(True)
        wi, bi = dense(ffn, hidden, 1.4)
        wo, bo = dense(hidden, ffn, 0.7)
        if i < max(1, layers - 2):                     # the massive-activation neuron j of this layer
            j = int(rng.integers(ffn))
            wi[j] *= 0.1
            wi[j, d] = 2.4                             # reads d: ~+15-25 at [CLS], below 0 elsewhere
            bi[j] = -4.0
            wo[:, j] *= 0.1
            wo[d, j] = massive / 25.0                  # writes ~massive into d
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = wi, bi
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = wo, bo
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = ln(False)
    w["meta.outlier_dim"] = np.array([d], np.float32)
    if center and layers:
        # Contrastive training spreads sentence embeddings (MiniLM: unrelated sentences have a cosine
        # of ~0.02); random weights leave a large component shared by every token. Remove it the way
        # a trained final LayerNorm bias would: the mean last hidden state on synthetic text -> 0.
        t = min(32, max_positions)
        g = bert_encoder(w, layers=layers, heads=heads, seq_len=t, hidden=hidden, ffn=ffn, pooling=None)
        x, mask = synthetic_encoder_inputs(w, 16, t, seed=seed + 1, min_len=min(4, t))
        h = g.run({"x": x, "mask": mask})[mask[:, 0, 0, :] == 0]
        key = f"encoder.layer.{layers - 1}.output.LayerNorm.bias"
        w[key] = (w[key] - h.mean(axis=0)).astype(np.float32)
    return w


def synthetic_encoder_inputs(weights: dict, n: int, seq_len: int, seed: int = 0, *, min_len: int = 4,
                             pad_value: float = MASK_PAD):
    """(x [n, seq_len, hidden], mask [n, 1, 1, seq_len]) for ``bert_encoder``: token ids drawn from
    a Zipf-like distribution over the weights' vocabulary (a [CLS]-like id 1 first, a [SEP]-like id 2
    last), lengths log-normal around seq_len / 3 (clipped to [min_len, seq_len]; padding id 0),
    embedded with ``embed_tokens``; ``mask`` is 0 on tokens and ``pad_value`` on padding."""
    rng = np.random.default_rng(seed)
    vocab = np.asarray(weights["embeddings.word_embeddings.weight"]).shape[0]
    lengths = np.clip(np.rint(rng.lognormal(math.log(max(seq_len / 3, min_len)), 0.5, n)), min_len, seq_len)
    ranks = np.arange(1, vocab - 2, dtype=np.float64)
    prob = 1.0 / ranks ** 1.1
    prob /= prob.sum()
    ids = np.zeros((n, seq_len), np.int64)
    keep = np.zeros((n, seq_len), np.int64)
    for r, L in enumerate(lengths.astype(int)):
        ids[r, :L] = 3 + rng.choice(vocab - 3, L, p=prob)
        ids[r, 0], ids[r, L - 1] = CLS_ID, SEP_ID
        keep[r, :L] = 1
    return embed_tokens(weights, ids), additive_mask(keep, pad_value)
