# ruff: noqa
"""One-off script that built this catalogue file (kept as provenance: it shows which source fed which
column). It reads the read-only shared data at /work/shared; rerunning it elsewhere needs those paths."""
import csv

COLS = ["id", "hf_id", "aliases", "family", "model_type", "num_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "hidden_act", "mlp_gated", "attention_bias", "linear_modules_per_layer", "params_b", "is_distilled", "is_instruct", "in_paper", "architecture_of", "config_source", "notes"]

HF = "https://huggingface.co/"
# nn.Linear modules per decoder layer of each model type in transformers 5.24 (models/<type>/modeling_<type>.py):
# q/k/v/o + gate/up/down, or bloom's fused query_key_value, dense, dense_h_to_4h, dense_4h_to_h and phi3's fused
# qkv_proj, o_proj, gate_up_proj, down_proj (added 2026-11-27, session s14)
LINEAR_MODULES_PER_LAYER = {"qwen2": 7, "qwen3": 7, "llama": 7, "mistral": 7, "gemma": 7, "bloom": 4, "phi3": 4}
T, F = "true", "false"
# (id, hf_id, aliases, family, model_type, L, h, I, nh, nkv, hd, V, ctx, tie, act, gated, qkv_bias,
#  distilled, instruct, in_paper, architecture_of, config_source, notes)
R = [
 ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b;qwen-2.5-7b-instruct", "qwen2.5", "qwen2",
  28, 3584, 18944, 28, 4, 128, 152064, 32768, F, "silu", T, T, F, T, T, "",
  HF + "osllmai-community/Qwen2.5-7B-Instruct/blob/main/config.json (mirror; _name_or_path Qwen/Qwen2.5-7B-Instruct)",
  ""),
 ("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
  "deepseek-r1-7b;r1-distill-qwen-7b;deepseek-r1-distill-7b", "deepseek-r1-distill", "qwen2",
  28, 3584, 18944, 28, 4, 128, 152064, 131072, F, "silu", T, T, T, T, T, "qwen2.5-7b-instruct",
  HF + "unsloth/DeepSeek-R1-Distill-Qwen-7B-bnb-4bit/blame/main/config.json (mirror; _name_or_path "
  "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B); " + HF + "xl-zhao/PromptCoT-DS-7B/raw/main/config.json "
  "(fine-tune of it; full field list incl. tie_word_embeddings false, vocab 152064)",
  "same tensor shapes as qwen2.5-7b-instruct (vocab 152064, untied); differs only in rope_theta 10000 "
  "(vs 1e6) and max_position_embeddings 131072 (vs 32768), which change no weight or FLOP count"),
 ("mistral-7b-instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.2", "mistral-7b-instruct;mistral-instruct-v0.2",
  "mistral", "mistral", 32, 4096, 14336, 32, 8, 128, 32000, 32768, F, "silu", T, F, F, T, T, "",
  HF + "hiranb/mistralonnx/blob/10b6c0e32956bdffe6bdd7a56c246f14d6b68fb6/config.json (copy; _name_or_path "
  "mistralai/Mistral-7B-Instruct-v0.2)", "rope_theta 1e6, sliding_window null"),
 ("neural-chat-7b-v3-3", "Intel/neural-chat-7b-v3-3", "neural-chat;neural-chat-7b;neuralchat-7b-v3-3",
  "neural-chat", "mistral", 32, 4096, 14336, 32, 8, 128, 32000, 32768, F, "silu", T, F, F, T, T,
  "mistral-7b-instruct-v0.2",
  HF + "Intel/neural-chat-7b-v3-3/blob/main/README.md (model card: base_model Intel/neural-chat-7b-v3-1, "
  "itself fine-tuned from mistralai/Mistral-7B-v0.1); " + HF + "predictionguard/neural-chat-logic/blob/main/"
  "config.json (copy of the Intel/neural-chat-7b-v3-1 config)",
  "v3-3's own config.json not found in the searchable copies; shape from its base v3-1 (a fine-tune keeps "
  "the shape). Same tensor shapes as mistral-7b-instruct-v0.2; config differs in rope_theta 10000 and "
  "sliding_window 4096, which change no weight count"),
 ("bloomz-7b1", "bigscience/bloomz-7b1", "bloomz;bloomz-7b", "bloomz", "bloom",
  30, 4096, 16384, 32, 32, 128, 250880, "", T, "gelu", F, T, F, T, T, "",
  "cli99/llm-analysis@b60b392f747850d198145889205d8a3586d00282:llm_analysis/model_configs/"
  "bigscience_bloomz-7b1-mt.json (bloomz-7b1-mt: 30 layers, 32 heads, hidden 4096, ffn 16384, vocab 250880); "
  + HF + "iproskurina/bloom-7b1-GPTQ-4bit-g128/blob/045583d557b51e2b874f78c36c546f980eb106c1/config.json "
  "(copy of the bigscience/bloom-7b1 base config: n_layer 30, n_head 32, hidden_size 4096, vocab 250880)",
  "bloomz-7b1's own config.json not found in the searchable copies; shape from bloom-7b1 (its base) and "
  "bloomz-7b1-mt, which agree. BLOOM: ALiBi (no max_position_embeddings), LayerNorm with bias, biased "
  "linear layers, non-gated MLP with 4*hidden (intermediate_size is implied, not a config field), fixed "
  "tanh-GELU, lm_head tied (BloomConfig default tie_word_embeddings=True, transformers 5.24 "
  "configuration_bloom.py)"),
 ("yi-6b", "01-ai/Yi-6B", "yi;yi-6b-base", "yi", "llama", 32, 4096, 11008, 32, 4, 128, 64000, 4096, F,
  "silu", T, F, F, F, T, "", HF + "01-ai/Yi-6B/blob/main/config.json (official, commit 8782f92)", ""),
 ("yi-6b-chat", "01-ai/Yi-6B-Chat", "yi-chat", "yi", "llama", 32, 4096, 11008, 32, 4, 128, 64000, 4096, F,
  "silu", T, F, F, T, F, "yi-6b",
  HF + "01-ai/Yi-6B/blob/main/config.json (base model config); " + HF + "datasets/open-llm-leaderboard/"
  "requests/blame/aee85b7ddd76ebf4f86f487812bcb6c847f15f71/01-ai/Yi-6B-Chat_eval_request_False_bfloat16_"
  "Original.json (Yi-6B-Chat: LlamaForCausalLM, params 6.061 B)",
  "Yi-6B-Chat's own config.json not found in the searchable copies; shape assumed equal to Yi-6B, "
  "consistent with the 6.061 B parameters the Open LLM Leaderboard request lists (computed from this shape: "
  "6.061 B)"),
 ("yi-1.5-6b-chat", "01-ai/Yi-1.5-6B-Chat", "yi-1.5-6b;yi1.5-6b-chat", "yi-1.5", "llama", 32, 4096, 11008, 32, 4,
  128, 64000, 4096, F, "silu", T, F, F, T, F, "yi-6b",
  HF + "01-ai/Yi-1.5-6B-Chat/blob/dd86db5e101a25cc977f978735b4eaf5a9e5a5cf/config.json (official)",
  "same tensor shapes as yi-6b (rms_norm_eps 1e-6 vs 1e-5 only)"),
 ("mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1", "mistral-7b;mistral-7b-base", "mistral", "mistral",
  32, 4096, 14336, 32, 8, 128, 32000, 32768, F, "silu", T, F, F, F, F, "mistral-7b-instruct-v0.2",
  HF + "dmayboroda/42_mistral_0.1/blob/main/config.json (_name_or_path mistralai/Mistral-7B-v0.1); "
  + HF + "mlx-community/mistral-7B-v0.1/blob/bd10b289a348d5c9b49bed31feb63c4b2e8c7089/config.json "
  "(n_layers 32, dim 4096, hidden_dim 14336, n_heads 32, head_dim 128, n_kv_heads 8, vocab 32000)",
  "same tensor shapes as mistral-7b-instruct-v0.2; differs in rope_theta 10000 and sliding_window 4096 "
  "(attention over at most 4096 past tokens), no weight-count change"),
 ("mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "mistral-instruct-v0.3", "mistral",
  "mistral", 32, 4096, 14336, 32, 8, 128, 32768, 32768, F, "silu", T, F, F, T, F, "",
  HF + "mistralai/Mistral-7B-Instruct-v0.3/blob/c170c708c41dac9275d15a8fff4eca08d52bab71/config.json (official)",
  "vocab 32768 (v0.2: 32000), so not architecture_of v0.2"),
 ("llama-2-7b", "meta-llama/Llama-2-7b-hf", "llama2-7b;llama-2-7b-hf", "llama-2", "llama",
  32, 4096, 11008, 32, 32, 128, 32000, 4096, F, "silu", T, F, F, F, F, "",
  HF + "garage-bAInd/Platypus2-7B/blame/9dafde32c8d91c55d897e4dc16c8bb706d33d8e4/config.json (_name_or_path "
  "meta-llama/Llama-2-7b-hf); cli99/llm-analysis@7a949f073c870af9ce2c3ee82eda3a35c218eba2:llm_analysis/"
  "model_configs/NousResearch_Llama-2-7b-hf.json", ""),
 ("llama-2-7b-chat", "meta-llama/Llama-2-7b-chat-hf", "llama2-7b-chat;llama-2-7b-chat-hf", "llama-2", "llama",
  32, 4096, 11008, 32, 32, 128, 32000, 4096, F, "silu", T, F, F, T, F, "llama-2-7b",
  HF + "gilf/llama-2-7b-privacyredaction/blame/main/config.json (_name_or_path meta-llama/Llama-2-7b-chat-hf)",
  ""),
 ("llama-3-8b", "meta-llama/Meta-Llama-3-8B", "meta-llama-3-8b;llama3-8b", "llama-3", "llama",
  32, 4096, 14336, 32, 8, 128, 128256, 8192, F, "silu", T, F, F, F, F, "",
  HF + "Magpie-Align/Llama-3-8B-Magpie-Air-SFT-v0.1/blame/main/config.json (_name_or_path "
  "meta-llama/Meta-Llama-3-8B)", "rope_theta 500000"),
 ("llama-3-8b-instruct", "meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama-3-8b-instruct;llama3-8b-instruct",
  "llama-3", "llama", 32, 4096, 14336, 32, 8, 128, 128256, 8192, F, "silu", T, F, F, T, F, "llama-3-8b",
  HF + "zakkosi/jhcode-meta-llama3_eng/blob/main/config.json (_name_or_path meta-llama/Meta-Llama-3-8B-Instruct)",
  ""),
 ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct",
  "meta-llama-3.1-8b-instruct;meta-llama/Meta-Llama-3.1-8B-Instruct;llama3.1-8b-instruct", "llama-3.1", "llama",
  32, 4096, 14336, 32, 8, 128, 128256, 131072, F, "silu", T, F, F, T, F, "llama-3-8b",
  HF + "NaniDAO/Meta-Llama-3.1-8B-Instruct-ablated/blame/c4e4c2b4bfa8c8423b5364ad65eeef8f64b93e8b/config.json "
  "(_name_or_path meta-llama/Meta-Llama-3.1-8B-Instruct)",
  "same tensor shapes as llama-3-8b; differs in rope_scaling (llama3, factor 8) and context 131072"),
 ("qwen2-7b", "Qwen/Qwen2-7B", "qwen-2-7b", "qwen2", "qwen2", 28, 3584, 18944, 28, 4, 128, 152064, 131072, F,
  "silu", T, T, F, F, F, "qwen2.5-7b-instruct",
  HF + "tanliboy/zephyr-qwen2-7b-sft/blame/49ce7faa0ee474aa4c1091ef120b30af2155150d/config.json "
  "(_name_or_path Qwen/Qwen2-7B)",
  "same tensor shapes as qwen2.5-7b-instruct; max_position_embeddings 131072"),
 ("qwen1.5-7b", "Qwen/Qwen1.5-7B", "qwen-1.5-7b", "qwen1.5", "qwen2", 32, 4096, 11008, 32, 32, 128, 151936,
  32768, F, "silu", T, T, F, F, F, "",
  HF + "Xu-Ouyang/Qwen1.5-7B-int3-GPTQ-wikitext2/blame/main/config.json (_name_or_path Qwen/Qwen1.5-7B)", ""),
 ("qwen1.5-7b-chat", "Qwen/Qwen1.5-7B-Chat", "qwen-1.5-7b-chat", "qwen1.5", "qwen2", 32, 4096, 11008, 32, 32,
  128, 151936, 32768, F, "silu", T, T, F, T, F, "qwen1.5-7b",
  HF + "Qwen/Qwen1.5-7B-Chat/blob/c893e33b7355e09bd215b8c3fbde3b6bef3d2864/config.json (official)",
  "added beyond the requested list because intel/auto-round publishes its BF16/INT4 accuracy"),
 ("qwen3-8b", "Qwen/Qwen3-8B", "qwen-3-8b", "qwen3", "qwen3", 36, 4096, 12288, 32, 8, 128, 151936, 40960, F,
  "silu", T, F, F, T, F, "",
  HF + "thejaminator/qwen-hook-layer-9/commit/478fb720f1f3ced834fce0275b55b2732d438edc "
  "('Copy config.json from Qwen/Qwen3-8B')",
  "head_dim 128 from config; per-head q_norm/k_norm RMSNorms (transformers modeling_qwen3)"),
 ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b", "qwen2.5", "qwen2", 24, 896, 4864, 14,
  2, 64, 151936, 32768, T, "silu", T, T, F, T, F, "",
  HF + "unsloth/Qwen2.5-0.5B-Instruct/blame/00bafb7cd8d700177637919923d0e579fe0cfa5f/config.json "
  "(_name_or_path Qwen/Qwen2.5-0.5B-Instruct)", ""),
 ("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5-1.5b", "qwen2.5", "qwen2", 28, 1536, 8960,
  12, 2, 128, 151936, 32768, T, "silu", T, T, F, T, F, "",
  HF + "onnx-community/Qwen2.5-1.5B-Instruct/blob/94677ac90364afdc2b476788d085a9680efde737/config.json "
  "(_name_or_path Qwen/Qwen2.5-1.5B-Instruct)", ""),
 ("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct", "qwen2.5-3b", "qwen2.5", "qwen2", 36, 2048, 11008, 16, 2,
  128, 151936, 32768, T, "silu", T, T, F, T, F, "",
  HF + "osllmai-community/Qwen2.5-3B-Instruct/blob/main/config.json (mirror; _name_or_path "
  "Qwen/Qwen2.5-3B-Instruct)", ""),
 ("qwen2.5-14b-instruct", "Qwen/Qwen2.5-14B-Instruct", "qwen2.5-14b", "qwen2.5", "qwen2", 48, 5120, 13824, 40, 8,
  128, 152064, 32768, F, "silu", T, T, F, T, F, "",
  HF + "Siddharth63/Qwen2.5-14B-Instruct-AutoRound-GPTQ-4bit/blob/main/config.json (_name_or_path "
  "Qwen/Qwen2.5-14B-Instruct; shape fields only, its quantization_config is not ours)", ""),
 ("qwen2-1.5b", "Qwen/Qwen2-1.5B", "qwen-2-1.5b", "qwen2", "qwen2", 28, 1536, 8960, 12, 2, 128, 151936, 131072,
  T, "silu", T, T, F, F, F, "",
  HF + "glouriousgautam/Qwen2-1.5b-oasstguanaco-qdora-merged/blame/main/config.json (_name_or_path "
  "Qwen/Qwen2-1.5B)", ""),
 ("phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct", "phi-3-mini;phi3-mini;phi-3-mini-4k", "phi-3",
  "phi3", 32, 3072, 8192, 32, 32, 96, 32064, 4096, F, "silu", T, F, F, T, F, "",
  HF + "Alignment-Lab-AI/idfkphi4kiguess/blob/main/config.json ('Duplicate from microsoft/Phi-3-mini-4k-instruct')",
  "fused qkv_proj and gate_up_proj (same weight count as separate projections); sliding_window 2047"),
 ("tinyllama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama;tinyllama-1.1b;tinyllama-1.1b-chat-v1.0",
  "tinyllama", "llama", 22, 2048, 5632, 32, 4, 64, 32000, 2048, F, "silu", T, F, F, T, F, "",
  HF + "neuralmagic/TinyLlama-1.1B-Chat-v1.0-pruned2.4/blame/main/config.json (_name_or_path "
  "TinyLlama/TinyLlama-1.1B-Chat-v1.0; shape fields only)", ""),
 ("gemma-7b", "google/gemma-7b", "gemma;gemma-7b-base", "gemma", "gemma", 28, 3072, 24576, 16, 16, 256, 256000,
  8192, T, "gelu", T, F, F, F, F, "",
  HF + "juhwanlee/gemma-7B-alpaca-case-0-2/blame/main/config.json (_name_or_path google/gemma-7b)",
  "head_dim 256 (num_heads*head_dim = 4096 != hidden 3072); GeGLU MLP; config has no tie_word_embeddings, "
  "GemmaConfig default is True (transformers 5.24 configuration_gemma.py)"),
 ("tiny-test", "", "tiny;tiny-llama-test", "test", "llama", 2, 64, 128, 4, 2, 16, 512, 512, F, "silu", T, F, F,
  F, F, "", "project test architecture", "a few-hundred-kB llama-shaped model for CPU tests and smoke runs"),
]


def main(path):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLS)
        for r in R:
            (mid, hf, al, fam, mt, L, h, i, nh, nkv, hd, v, ctx, tie, act, gated, bias, dist, inst, paper, arch,
             src, notes) = r
            aliases = ";".join(x for x in ([hf] if hf else []) + al.split(";") if x)
            notes = "; ".join(x for x in ("params_b computed from shape (tools/compute_params.py)", notes) if x)
            w.writerow([mid, hf, aliases, fam, mt, L, h, i, nh, nkv, hd, v, ctx, tie, act, gated, bias,
                        LINEAR_MODULES_PER_LAYER[mt], "",
                        dist, inst, paper, arch, src, notes])


if __name__ == "__main__":
    import sys
    main(sys.argv[1])
