#!/usr/bin/env bash
# Every GPU figure of the README in one short run (about 8 minutes on one H100), written to
# ${OUT:-bench-gpu}/: extraction speed of HuBERT base (LibriSpeech-like lengths, fp32 and bf16:
# the seed's batch-1 loop, the bare model, the pipeline), decoding throughput with the job's
# CPUs, fp32 GPU features against the CPU's per family, the precision effect, CREPE tiny and
# full against torchcrepe's own loop, and the demo with --resources gpu=1.
#   bash bench/gpu_figures.sh            (from the repository root, .venv installed with the
#                                         test extra and hearbaseline, as the README says)
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${OUT:-bench-gpu}")
mkdir -p "$out"
py=$PWD/.venv/bin/python
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
run() {  # name, command...: keep each figure's output, go on when one fails
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/summary.txt"
  /usr/bin/time -f "%e s wall" "$@" > "$out/$name.txt" 2>&1
  tail -4 "$out/$name.txt" | tee -a "$out/summary.txt"
}
for precision in fp32 bf16; do
  run "extract-speed-$precision" $py bench/extract_speed.py --device cuda --model base \
    --lengths librispeech --audio-seconds 20000 --batch-size 32 --precision "$precision"
done
run decode-throughput $py bench/decode_speed.py --lengths librispeech --audio-seconds 2000 \
  --workers 7
run device-agreement $py bench/device_agreement.py --device cuda
run precision-effect $py bench/precision_effect.py --device cuda
run crepe-tiny $py bench/crepe_speed.py --device cuda --capacity tiny --audio-seconds 3000
run crepe-full $py bench/crepe_speed.py --device cuda --capacity full --audio-seconds 600
rm -rf "$out/demo" && mkdir -p "$out/demo"
cp -r Snakefile rules scripts report config.yaml config.schema.yaml envs audioprobe "$out/demo/"
(cd "$out/demo" && run demo-gpu "$(dirname "$py")/snakemake" --cores 16 --resources gpu=1)
