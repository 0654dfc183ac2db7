# ruff: noqa
"""One-off script that built this catalogue file (kept as provenance: it shows which source fed which
column). It reads the read-only shared data at /work/shared; rerunning it elsewhere needs those paths."""
import csv
import re
import sys
from collections import defaultdict

PUB = "/work/shared/data/public/intel-auto-round-accuracy/"
AR_REPO = "intel/auto-round"
LIC_AR = "Apache-2.0"

# doc -> (commit with the content, per PROVENANCE.tsv last_commit_touching_path)
prov = {}
for r in csv.DictReader(open("/work/shared/data/public/PROVENANCE.tsv"), delimiter="\t"):
    if r["repo"] == AR_REPO and r["repo_path"].startswith("docs/"):
        prov[r["repo_path"]] = r["last_commit_touching_path"].split()[0]


def ar_src(doc):
    c = prov[doc]
    return f"{AR_REPO}@{c}:{doc}", f"https://github.com/{AR_REPO}/blob/{c}/{doc}"


rows = defaultdict(dict)  # doc -> {(metric, variant): value}
for r in csv.DictReader(open(PUB + "derived_accuracy_long.csv")):
    rows[r["source_file"]][(r["metric"], r["variant"])] = float(r["value"])

# catalogue model, baseline column, quant column(s) -> (quant label, method note)
DOCS = {
  "docs/Llama-2-7b-chat-hf-acc.md": ("llama-2-7b-chat", "FP16", [("int4 qdq", "AutoRound W4 (int4 'qdq' fake-quant of the AutoRound model)")], "lm-eval git 96d185fa"),
  "docs/Meta-Llama-3-8B-Instruct-acc.md": ("llama-3-8b-instruct", "**BF16**", [("w4g128 w/o lm-head", "AutoRound W4G128, lm_head not quantized")], "lm-eval 0.4.2"),
  "docs/Mistral-7B-Instruct-v0.2-acc.md": ("mistral-7b-instruct-v0.2", "BF16", [("INT4", "AutoRound INT4 (Intel/Mistral-7B-Instruct-v0.2-int4-inc, AutoGPTQ format)")], "lm-eval git 96d185fa"),
  "docs/Mistral-7B-v0.1-acc.md": ("mistral-7b-v0.1", "BF16", [("[INT4](https://huggingface.co/Intel/Mistral-7B-v0.1-int4-inc)", "AutoRound INT4 (Intel/Mistral-7B-v0.1-int4-inc), lm_head not quantized")], "lm-eval 0.4.2"),
  "docs/Qwen1.5-7B-Chat-acc.md": ("qwen1.5-7b-chat", "BF16", [("INT4 sym recipe", "AutoRound INT4 symmetric recipe"), ("INT4 asym recipe", "AutoRound INT4 asymmetric recipe")], "lm-eval git 96d185fa, --num_fewshot 0"),
  "docs/Qwen2.5-7B-Instruct-sym.md": ("qwen2.5-7b-instruct", "BF16", [("INT4 (5.3G)", "AutoRound INT4 W4G128 symmetric, lm_head not quantized")], "lm-eval 0.4.5"),
  "docs/Qwen2.5-14B-Instruct-sym.md": ("qwen2.5-14b-instruct", "BF16", [("INT4", "AutoRound INT4 W4G128 symmetric")], "lm-eval 0.4.5"),
  "docs/Yi-6B-Chat-acc.md": ("yi-6b-chat", "BF16", [("INT4", "AutoRound INT4")], "lm-eval git 96d185fa, --num_fewshot 0"),
  "docs/gemma-7b-acc.md": ("gemma-7b", "FP16", [("AutoRound V0.2", "AutoRound v0.2 INT4 (tuned and evaluated in FP16 as the doc recommends)")], "lm-eval 0.4.2, dtype=float16"),
  "docs/neural-chat-7b-v3-3-acc.md": ("neural-chat-7b-v3-3", "FP16", [("INT4", "AutoRound INT4 (Intel/neural-chat-v3-3-int4-inc)")], "lm-eval git f3b79170"),
  # models outside the catalogue: general evidence (model_id empty)
  "docs/Mixtral-8x7B-Instruct-v0.1-acc.md": ("", "BF16", [("INT4", "AutoRound INT4")], "lm-eval git f3b79170"),
  "docs/Mixtral-8x7B-v0.1-acc.md": ("", "BF16", [("INT4", "AutoRound INT4")], "lm-eval git f3b79170"),
  "docs/Qwen2.5-32B-Instruct-sym.md": ("", "BF16", [("INT4", "AutoRound INT4 W4G128 symmetric")], "lm-eval 0.4.5"),
  "docs/Qwen2.5-72B-Instruct-sym.md": ("", "BF16", [("INT4", "AutoRound INT4 W4G128 symmetric")], "lm-eval 0.4.5"),
  "docs/baichuan2-7b-chat-acc.md": ("", "BF16", [("INT4", "AutoRound INT4")], "lm-eval git 96d185fa, --num_fewshot 0"),
  "docs/bloom-3B-acc.md": ("", "FP16", [("INT4", "AutoRound INT4")], "lm-eval git 96d185fa"),
  "docs/falcon-7b-acc.md": ("", "BF16", [("int4", "AutoRound INT4 group_size 64")], "lm-eval 0.4.2"),
  "docs/gemma-2b-acc.md": ("", "FP16", [("AutoRound v0.2", "AutoRound v0.2 INT4 (FP16)")], "lm-eval 0.4.2"),
  "docs/gemma-7b-it-acc.md": ("", "BF16", [("int4", "AutoRound INT4")], "lm-eval git 96d185fa"),
  "docs/gpt-j-6B-acc.md": ("", "FP16", [("INT4", "AutoRound INT4")], "lm-eval git 96d185fa"),
  "docs/neural-chat-7b-v3-1-acc.md": ("", "FP16", [("INT4", "AutoRound INT4")], "lm-eval git f3b79170"),
  "docs/opt-2.7b-acc.md": ("", "FP16", [("INT4", "AutoRound INT4")], "lm-eval git 96d185fa"),
  "docs/phi-2-acc.md": ("", "FP16", [("INT4", "AutoRound INT4")], "lm-eval git 96d185fa"),
}

TASKMAP = {"gsm8k 5 shots": ("gsm8k", "5"), "leaderboard_mmlu_pro 5 shots": ("leaderboard_mmlu_pro", "5"),
           "ceval-valid": ("ceval_valid", "0"), "ceval": ("ceval_valid", "0")}
SKIP = {"Avg.", "Avg", "leaderboard_ifeval inst_level_strict_acc", "leaderboard_ifeval prompt_level_strict_acc"}
METRIC = {"mmlu": "acc", "truthfulqa_mc1": "acc", "gsm8k": "exact_match", "lambada_openai": "acc",
          "winogrande": "acc", "piqa": "acc_or_acc_norm_unlabelled", "arc_challenge": "acc_or_acc_norm_unlabelled",
          "arc_easy": "acc_or_acc_norm_unlabelled", "hellaswag": "acc_or_acc_norm_unlabelled",
          "openbookqa": "acc_or_acc_norm_unlabelled", "boolq": "acc", "rte": "acc", "cmmlu": "acc",
          "ceval_valid": "acc", "leaderboard_mmlu_pro": "acc"}
PAPER5 = {"mmlu", "arc_challenge", "hellaswag", "gsm8k", "truthfulqa_mc1"}


def task_of(metric):
    if metric in TASKMAP:
        return TASKMAP[metric]
    return metric, "0"


def model_label(doc):
    return doc.split("/")[-1].replace("-acc.md", "").replace("-sym.md", "")


score_rows, qa_rows = [], []
for doc, (mid, base, quants, evalv) in DOCS.items():
    d = rows[doc]
    src, url = ar_src(doc)
    metrics = sorted({m for (m, v) in d} - SKIP, key=lambda m: (task_of(m)[0] not in PAPER5, m))
    for m in metrics:
        task, shots = task_of(m)
        if (m, base) not in d:
            continue
        bval = d[(m, base)]
        if mid and task in PAPER5:
            score_rows.append([mid, task, METRIC.get(task, "acc"), shots, f"{bval:.4f}", src, url, LIC_AR])
        for qlabel, method in quants:
            if (m, qlabel) not in d:
                continue
            qval = d[(m, qlabel)]
            note = (f"method=AutoRound; approximate match: same W4 weight-only format as torchao Int4WeightOnly "
                    f"(group 128) but AutoRound-tuned rounding, not RTN, so its loss is likely a lower bound "
                    f"for RTN; variant '{qlabel.split('](')[0].strip('[')}' = {method}; baseline {base.strip('*')}; "
                    f"{evalv}; {shots}-shot; metric {METRIC.get(task, 'acc')}")
            if not mid:
                note = f"model={model_label(doc)} (not in catalogue); " + note
            qa_rows.append(["torchao-int4-wo", mid, task, f"{bval:.4f}", f"{qval:.4f}", f"{qval - bval:+.4f}",
                            src, url, LIC_AR, note])

# acc.md Table 2 (W4G128, 11 tasks, 0-shot, qdq fake models, lm-eval git 008fc2a2): RTN rows = exact method match
acc = open(PUB + "docs/acc.md", encoding="utf-8").read()
sec = acc[acc.index("### 2. Accuracies"):acc.index("### 3. Accuracies")]
cols = ["mmlu", "lambada_openai", "hellaswag", "winogrande", "piqa", "truthfulqa_mc1", "openbookqa", "boolq",
        "rte", "arc_easy", "arc_challenge"]
src, url = ar_src("docs/acc.md")
for block_name, mid in (("Mistral-7B", "mistral-7b-v0.1"), ("V2-7B", "llama-2-7b")):
    i = sec.index(f">{block_name}</td>")
    blk = sec[i:]
    def vals(label):
        j = blk.index(f"<td>{label}</td>")
        tds = re.findall(r"<td>\s*([0-9.]+)\s*</td>", blk[j:j + 2000])[:12]
        return [float(x) / 100 for x in tds[:11]]
    fp, rtn = vals("FP16"), vals("RTN")
    for t, b, q in zip(cols, fp, rtn):
        qa_rows.append(["torchao-int4-wo", mid, t, f"{b:.4f}", f"{q:.4f}", f"{q - b:+.4f}", src, url, LIC_AR,
                        "method=RTN; exact method match: round-to-nearest W4 group 128 weight-only (auto-round "
                        "acc.md table 2 'W4G128'; symmetric/asymmetric not stated); baseline FP16; qdq fake-quant "
                        "models; lm-eval git 008fc2a2; 0-shot (table header); metric "
                        + METRIC.get(t, "acc") + "; percentages in the source divided by 100"])

# neural-chat-7b-v3-3 model card: Open LLM Leaderboard (v1) results
NC = "https://huggingface.co/Intel/neural-chat-7b-v3-3/blob/main/README.md"
nc_src = "Intel/neural-chat-7b-v3-3 model card (README.md model-index, Open LLM Leaderboard v1 results)"
for task, metric, shots, v in (("arc_challenge", "acc_norm", "25", 66.89), ("hellaswag", "acc_norm", "10", 85.26),
                               ("mmlu", "acc", "5", 63.07), ("truthfulqa_mc2", "mc2", "0", 63.01),
                               ("gsm8k", "acc", "5", 61.11)):
    score_rows.append(["neural-chat-7b-v3-3", task, metric, shots, f"{v / 100:.4f}", nc_src, NC, "Apache-2.0"])

# ML.ENERGY legacy score.csv (lm-eval, %): Llama-2-7b-chat-hf
ml = {r["model"]: r for r in csv.DictReader(open("/work/shared/data/public/ml-energy-leaderboard-v2/data/legacy/score.csv"))}
r = ml["metaai/Llama-2-7b-chat-hf"]
mlsrc = "ml-energy/leaderboard-v2@c3af7f31e231a2a7021c5f8e2a54dd712d02e6e2:data/legacy/score.csv"
mlurl = "https://github.com/ml-energy/leaderboard-v2/blob/c3af7f31e231a2a7021c5f8e2a54dd712d02e6e2/data/legacy/score.csv"
for task, col, metric in (("arc_challenge", "arc", "accuracy_unlabelled"), ("hellaswag", "hellaswag", "accuracy_unlabelled"),
                          ("truthfulqa_mc2", "truthfulqa", "mc2")):
    score_rows.append(["llama-2-7b-chat", task, metric, "", f"{float(r[col]) / 100:.4f}", mlsrc, mlurl, "Apache-2.0"])

out = sys.argv[1]
with open(out + "/model_scores.csv", "w", newline="") as fh:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["model_id", "task", "metric", "n_shot", "value", "source", "source_url", "licence"])
    w.writerows(score_rows)
with open(out + "/quant_accuracy.csv", "w", newline="") as fh:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["quant_id", "model_id", "task", "baseline_value", "quant_value", "delta_abs", "source", "source_url",
                "licence", "notes"])
    w.writerows(qa_rows)
print(len(score_rows), len(qa_rows))
