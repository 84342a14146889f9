"""Export the BERT-family ONNX test models of tests/data/onnx/transformers/ from Hugging Face transformers.

    pip install torch==2.13.0 transformers     # CPU torch; neither is a dependency of eightbit
    pip install onnxscript                     # only for the dynamo exporter's model
    python tools/export_transformers_models.py [--out tests/data/onnx/transformers]

Small configurations with random, seeded weights (no download): 2 layers, hidden 64, FFN 128,
vocabulary 512, 64 positions.

==========================  ===============================================================
file                        model, exporter
==========================  ===============================================================
bert_tiny_op14.onnx         BertModel (SDPA attention, the default), torch.onnx.export
                            dynamo=False, opset 14 (LayerNorm written out)
bert_tiny_op17.onnx         the same weights, opset 17 (LayerNormalization)
bert_tiny_dynamo.onnx       the same weights, dynamo=True, opset 18 (when onnxscript is installed)
distilbert_tiny_op17.onnx   DistilBertModel (no token types), dynamo=False, opset 17
minilm_tiny_op14.onnx       a MiniLM-like BertModel: 8 heads of 8, tanh GELU ("gelu_new"),
                            eager attention (transformers' extended attention mask), opset 14
roberta_tiny_op17.onnx      RobertaModel (padding id 1: position ids computed from input_ids with
                            CumSum; token types from its buffer), dynamo=False, opset 17
roberta_tiny_dynamo.onnx    the same weights, dynamo=True, opset 18
sentence_tiny_op17.onnx     a sentence-transformers-style encoder exported whole: BertModel, masked
                            mean pooling and L2 normalisation (``sentence_embedding``), and the
                            plain mean over the tokens (``mean_embedding``: ReduceMean),
                            dynamo=False, opset 17
==========================  ===============================================================

Weights look like a trained encoder's where it matters for int8 (``plant_outliers``): LayerNorm
gains of 3-6 (typical |x| of 4-8 in the residual stream) and two residual channels whose gain
takes them to 20-35; in each layer one FFN neuron that fires only at the first token (>= 20
there, about -0.16 elsewhere: its input row reads the direction that sets the first token apart
at that layer, helped by a bump in the position-0 embedding), with the FFN-down column of the
layer's largest weights.

Inputs are [batch, sequence] int64, both axes dynamic ("batch", "sequence"); outputs
``last_hidden_state`` and, for BERT, ``pooler_output``. Beside the models, ``<family>.npz`` holds
for each sequence length T in ``SEQ_LENS``: ``input_ids_T``, ``attention_mask_T`` (rows padded
at the end with the padding id: 0, RoBERTa's 1), ``token_type_ids_T`` (BERT) and torch's ``last_hidden_state_T`` /
``pooler_output_T`` (``sentence_embedding_T`` / ``mean_embedding_T`` for the sentence encoder),
so the tests need neither torch nor transformers.

    python tools/export_transformers_models.py --families sentence_tiny     # just that one
"""
from __future__ import annotations

import argparse
import io
import pathlib
import sys
import warnings

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEQ_LENS = (8, 16)
BATCH = 3
PAD_IDS = {"roberta_tiny": 1}      # the padding id of each family (0 unless listed)
SMALL = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=64)


# ---- models -------------------------------------------------------------------------------------

def make_bert(attn="sdpa", **overrides):
    from transformers import BertConfig, BertModel
    cfg = BertConfig(**{**SMALL, **overrides}, type_vocab_size=2, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = attn
    return BertModel(cfg, add_pooling_layer=True)


def make_roberta():
    from transformers import RobertaConfig, RobertaModel
    cfg = RobertaConfig(**SMALL, type_vocab_size=1, pad_token_id=PAD_IDS["roberta_tiny"], hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = "sdpa"
    return RobertaModel(cfg, add_pooling_layer=True)


def make_distilbert():
    from transformers import DistilBertConfig, DistilBertModel
    cfg = DistilBertConfig(vocab_size=SMALL["vocab_size"], dim=SMALL["hidden_size"], n_layers=2, n_heads=4,
                           hidden_dim=SMALL["intermediate_size"], max_position_embeddings=64, dropout=0.0,
                           attention_dropout=0.0)
    return DistilBertModel(cfg)


def _layer_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]


def _ffns(model):
    """(up, down) Linear pairs of every layer."""
    pairs = []
    for name, m in model.named_modules():
        if name.endswith("intermediate.dense"):                      # BERT
            pairs.append((m, dict(model.named_modules())[name.replace("intermediate.dense", "output.dense")]))
        elif name.endswith("ffn.lin1"):                               # DistilBERT
            pairs.append((m, dict(model.named_modules())[name.replace("lin1", "lin2")]))
    return pairs


def _position_table(model):
    for name, m in model.named_modules():
        if name.endswith("position_embeddings"):
            return m.weight
    raise LookupError("no position_embeddings")


@torch.no_grad()
def plant_outliers(model, seed: int, inputs: dict) -> None:
    """Outliers like a trained encoder's (module docstring). ``inputs``: a batch (numpy) to find,
    layer by layer, the direction that sets the first token apart at each FFN's input."""
    g = torch.Generator().manual_seed(seed)
    d = SMALL["hidden_size"]
    hot = (5, 37)                                       # the outlier residual channels
    for k, ln in enumerate(_layer_norms(model)):
        ln.weight.copy_(3.0 + 3.0 * torch.rand(d, generator=g))
        ln.bias.copy_(0.5 * torch.randn(d, generator=g))
        # the embedding LayerNorm starts the two outlier channels with its bias; after that they
        # dominate every LayerNorm input (normalizing to about 4-5) and these gains keep them at 20-30
        ln.weight[hot[0]], ln.weight[hot[1]] = 5.5, 5.0
        if k == 0:
            ln.bias[hot[0]], ln.bias[hot[1]] = 22.0, -18.0
    # position 0 writes a direction of its own, so the first token stands apart in every layer
    direction = torch.randn(d, generator=g)
    _position_table(model)[0] += 1.5 * direction / direction.norm()
    feeds = {k: torch.from_numpy(v) for k, v in inputs.items()}
    for up, down in _ffns(model):                       # in order: each layer sees the ones before planted
        seen = {}
        hook = up.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0]))
        model(**feeds)
        hook.remove()
        x = seen["x"]                                   # [B, T, d], the FFN's input
        first, rest = x[:, 0], x[:, 1:].reshape(-1, d)
        axis = first.mean(0) - rest.mean(0)
        axis /= axis.norm()
        lo, hi = float((rest @ axis).max()), float((first @ axis).min())
        if hi <= lo:
            raise RuntimeError("the first token is not separable at this layer's FFN input")
        # one neuron: >= 20 at the first token, <= -1 (GELU ~ -0.16) everywhere else
        j = int(torch.randint(0, up.out_features, (1,), generator=g))
        scale = 21.0 / (hi - lo)
        up.weight[j] = scale * axis
        up.bias[j] = -scale * lo - 1.0
        down.weight[:, j] = 2.5 * down.weight.abs().max() * torch.sign(torch.randn(d, generator=g))


# ---- export -------------------------------------------------------------------------------------

def sample_inputs(seq: int, seed: int, token_types: bool, pad: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(pad + 1, SMALL["vocab_size"], size=(BATCH, seq)).astype(np.int64)
    lengths = [seq, max(1, seq - 3), max(1, seq // 2)]
    mask = np.zeros((BATCH, seq), np.int64)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
    ids[mask == 0] = pad                                # the pad token
    feeds = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        types = np.zeros((BATCH, seq), np.int64)
        for r, n in enumerate(lengths):
            types[r, n // 2:n] = 1                      # a second segment
        feeds["token_type_ids"] = types
    return feeds


def export(model, path: pathlib.Path, names, outputs, *, opset: int, dynamo: bool, pad: int = 0) -> None:
    seq = SEQ_LENS[0]
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(seq, 0, "token_type_ids" in names, pad).items()}
    args = tuple(example[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({o: {0: "batch"} for o in outputs})
    if outputs[0] == "last_hidden_state":
        axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            from torch.export import Dim
            batch, sequence = Dim("batch", min=1, max=64), Dim("sequence", min=2, max=SMALL["max_position_embeddings"])
            shapes = {n: {0: batch, 1: sequence} for n in names}
            program = torch.onnx.export(model, args, input_names=list(names), output_names=list(outputs),
                                        opset_version=opset, dynamo=True, dynamic_shapes=shapes)
            program.save(str(path))
        else:
            f = io.BytesIO()
            torch.onnx.export(model, args, f, input_names=list(names), output_names=list(outputs),
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
            path.write_bytes(f.getvalue())
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def reference_outputs(model, names, outputs, token_types: bool, pad: int = 0) -> dict:
    data = {}
    for seq in SEQ_LENS:
        feeds = sample_inputs(seq, seq, token_types, pad)
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        for k, v in feeds.items():
            data[f"{k}_{seq}"] = v
        for o in outputs:
            data[f"{o}_{seq}"] = getattr(out, o).numpy()
        h = out.last_hidden_state.abs().amax(dim=(0, 1))
        print(f"  T={seq}: |last_hidden_state| per channel: median {h.median():.1f}, top two "
              f"{h.topk(2).values.tolist()}")
    return data


class Wrapped(torch.nn.Module):
    """The model returning a tuple of the named outputs (the exporters name them in order)."""

    def __init__(self, model, outputs):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return tuple(getattr(out, o) for o in self.outputs)


class SentenceEncoder(torch.nn.Module):
    """sentence-transformers' pooling on a BertModel: the mean of the token vectors the attention
    mask keeps, L2-normalised (F.normalize), and the plain mean over every token."""

    outputs = ("sentence_embedding", "mean_embedding")

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                      token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).expand(h.size()).float()
        pooled = torch.sum(h * m, 1) / torch.clamp(m.sum(1), min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1), h.mean(1)


def export_sentence_encoder(out: pathlib.Path, seed: int) -> None:
    torch.manual_seed(seed)
    bert = make_bert("sdpa").eval()
    names = ("input_ids", "attention_mask", "token_type_ids")
    plant_outliers(bert, seed + 100, sample_inputs(SEQ_LENS[-1], 99, True))
    model = SentenceEncoder(bert).eval()
    data = {}
    for seq in SEQ_LENS:
        feeds = sample_inputs(seq, seq, True)
        with torch.no_grad():
            ys = model(*(torch.from_numpy(feeds[n]) for n in names))
        data.update({f"{k}_{seq}": v for k, v in feeds.items()})
        data.update({f"{o}_{seq}": y.numpy() for o, y in zip(model.outputs, ys)})
    np.savez_compressed(out / "sentence_tiny.npz", **data)
    export(model, out / "sentence_tiny_op17.onnx", names, model.outputs, opset=17, dynamo=False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "data" / "onnx" / "transformers")
    p.add_argument("--families", nargs="*", help="export only these families (default: all)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = lambda family: not args.families or family in args.families  # noqa: E731
    torch.manual_seed(0)
    bert_names, bert_outputs = ("input_ids", "attention_mask", "token_type_ids"), ("last_hidden_state", "pooler_output")
    families = [
        ("bert_tiny", lambda: make_bert("sdpa"), bert_names, bert_outputs, [(14, False), (17, False), (18, True)]),
        ("distilbert_tiny", make_distilbert, bert_names[:2], ("last_hidden_state",), [(17, False)]),
        ("minilm_tiny", lambda: make_bert("eager", num_attention_heads=8, hidden_act="gelu_new"), bert_names,
         bert_outputs, [(14, False)]),
        ("roberta_tiny", make_roberta, bert_names[:2], bert_outputs, [(17, False), (18, True)]),
    ]
    for k, (family, make, names, outputs, exports) in enumerate(families):
        if not wanted(family):
            continue
        torch.manual_seed(100 + k)
        model = make().eval()
        pad = PAD_IDS.get(family, 0)
        plant_outliers(model, 200 + k, sample_inputs(SEQ_LENS[-1], 99, "token_type_ids" in names, pad))
        wrapped = Wrapped(model, outputs).eval()
        np.savez_compressed(args.out / f"{family}.npz",
                            **reference_outputs(model, names, outputs, "token_type_ids" in names, pad))
        for opset, dynamo in exports:
            path = args.out / f"{family}_{'dynamo' if dynamo else f'op{opset}'}.onnx"
            try:
                export(wrapped, path, names, outputs, opset=opset, dynamo=dynamo, pad=pad)
            except Exception as e:                       # the dynamo exporter needs onnxscript
                if not dynamo:
                    raise
                print(f"skipped {path.name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
    if wanted("sentence_tiny"):
        export_sentence_encoder(args.out, 104)


if __name__ == "__main__":
    main()
