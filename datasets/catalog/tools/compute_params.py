"""Parameter count of every catalogue model, computed from its architecture shape in models.csv.

    python datasets/catalog/tools/compute_params.py            # print id, computed params, params_b column
    python datasets/catalog/tools/compute_params.py --write    # fill/refresh the params_b column in place

Counted (one tensor each, biases where the architecture has them):
  * token embeddings: vocab_size x hidden
  * per layer, attention: q (hidden -> heads*head_dim), k and v (hidden -> kv_heads*head_dim),
    o (heads*head_dim -> hidden); q/k/v biases when attention_bias (qwen2 family: q/k/v only, no o bias;
    other model types with attention_bias: o bias too); bloom: fused qkv and dense, all biased
  * per layer, MLP: gated (SwiGLU/GeGLU) = 3 matrices hidden x intermediate; bloom = 2 matrices with
    intermediate = 4 x hidden, both biased
  * norms: RMSNorm (weight only) twice per layer plus a final one; bloom uses LayerNorm (weight + bias)
    twice per layer, after the embeddings and at the end; qwen3 adds per-head q_norm and k_norm (head_dim each)
  * lm_head: vocab_size x hidden unless tie_word_embeddings
Rotary/ALiBi tables are buffers, not parameters. The result is exact for these transformers model types.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

MODELS_CSV = Path(__file__).resolve().parents[1] / "models.csv"
QKV_BIAS_ONLY = {"qwen2"}  # model types whose attention_bias covers q/k/v but not o


def _int(v: str | None) -> int:
    return int(float(v)) if v not in (None, "") else 0


def _bool(v: str | None) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes")


def param_count(row: dict[str, str]) -> int:
    """Exact parameter count of the architecture described by one models.csv row."""
    mt = (row.get("model_type") or "").strip()
    L, h, inter = _int(row["num_layers"]), _int(row["hidden_size"]), _int(row["intermediate_size"])
    nh = _int(row["num_attention_heads"])
    nkv = _int(row.get("num_kv_heads")) or nh
    hd = _int(row.get("head_dim")) or h // nh
    vocab = _int(row["vocab_size"])
    tied = _bool(row.get("tie_word_embeddings"))
    bias = _bool(row.get("attention_bias"))
    gated = _bool(row.get("mlp_gated"))

    emb = vocab * h
    if mt == "bloom":
        inter = inter or 4 * h
        attn = (h * 3 * h + 3 * h) + (h * h + h)
        mlp = (h * inter + inter) + (inter * h + h)
        norms = 2 * (2 * h)
        per_layer = attn + mlp + norms
        extra = 2 * h + 2 * h  # word_embeddings_layernorm + ln_f
    else:
        q, kv = nh * hd, nkv * hd
        attn = h * q + 2 * h * kv + q * h
        if bias:
            attn += q + 2 * kv
            if mt not in QKV_BIAS_ONLY:
                attn += h
        mlp = 3 * h * inter if gated else 2 * h * inter
        norms = 2 * h
        if mt == "qwen3":
            norms += 2 * hd
        per_layer = attn + mlp + norms
        extra = h  # final norm
    head = 0 if tied else vocab * h
    return emb + L * per_layer + extra + head


def format_b(n: int) -> str:
    """Billions with six significant digits (tiny test models keep their precision)."""
    return f"{n / 1e9:.6g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=MODELS_CSV)
    ap.add_argument("--write", action="store_true", help="rewrite the params_b column in place")
    args = ap.parse_args(argv)

    with args.csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    stale = 0
    for row in rows:
        value = format_b(param_count(row))
        if row.get("params_b") != value:
            stale += 1
        print(f"{row['id']:32s} {value:>12s}  (column: {row.get('params_b') or '-'})")
        row["params_b"] = value
    if args.write:
        with args.csv.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv} ({stale} values changed)")
        return 0
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
