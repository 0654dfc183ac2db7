"""HF transformers `generate` with the dynamic KV cache and no compilation (greedy, fixed length).

Engine params (both HF engines; part of the cell's hash): `attn_implementation` (default: the model's as loaded,
transformers' "sdpa") and `sdpa_gqa` ("auto", the default, or "force"); see measure/engines/attention.py."""

from __future__ import annotations

from measure.engines import Engine


class HfEager(Engine):
    id = "hf-eager"
    cache_implementation: str | None = None

    def prepare(self, model) -> None:
        """Per cell: the attention the cell's params ask for, else the model's own (measure/engines/attention.py)."""
        from measure.engines import attention

        attention.apply(model, self.params.get("attn_implementation"), self.params.get("sdpa_gqa"))

    def describe(self, model) -> dict:
        """The attention implementation the cell ran (`attn_implementation_used`)."""
        config = getattr(model, "config", None)
        return {"attn_implementation_used": getattr(config, "_attn_implementation", None)}

    def prefill(self, model, input_ids, attention_mask) -> None:
        """One forward over the prompt that fills a KV cache and yields the first token's logits."""
        import torch

        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)

    def generate_kwargs(self) -> dict:
        return {"disable_compile": True}

    def generate(self, model, input_ids, attention_mask, new_tokens: int, **overrides):
        """Greedy generate of exactly `new_tokens` per sequence; `overrides`: generate() arguments over the
        engine's own (a diagnostic's `disable_compile=True`: the same call, uncompiled)."""
        import torch

        with torch.inference_mode():
            return model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  pad_token_id=0, cache_implementation=self.cache_implementation,
                                  **{**self.generate_kwargs(), **overrides})

    def versions(self):
        import transformers

        return {"transformers_version": transformers.__version__}


ENGINE = HfEager
