# Sourced by scripts/device_run*.sh on a lent GPU machine: install the carried wheels (.whl/), set the
# environment, and write the session's provenance into $OUT (nvidia-smi.csv, host.txt, pip-versions.txt).
: "${OUT:?OUT must be set}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,temperature.gpu,power.draw --format=csv \
  > "$OUT/nvidia-smi.csv" 2>&1
{ lscpu 2>/dev/null | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node\(s\))"; echo "nproc: $(nproc)"; \
  echo "loadavg: $(cat /proc/loadavg)"; } > "$OUT/host.txt"
python3 -m pip list 2>/dev/null | grep -iE "^(torch|transformers|bitsandbytes|torchao|nvidia-ml-py|accelerate|triton) " \
  > "$OUT/pip-versions.txt"
