#!/bin/bash
# One-shot measurement on a many-core machine: ff5 vs graybox per setting (parallel
# processes, 3 threads each) and the timing comparison. Logs go to $OUT (or /tmp).
out=${OUT:-/tmp}
export OMP_NUM_THREADS=3 MKL_NUM_THREADS=3 NUMBA_NUM_THREADS=3
python -c "import torch, numba, torchcomp, hydra, scipy, soundfile; print('env ok', torch.__version__)" || exit 3
for s in compress:40 compress:70 compress:100 limit:70; do
  python benchmarks/graybox_fit.py --corpus /tmp/gb-cache-${s/:/_} --settings $s > $out/acc_${s/:/_}.log 2>&1 &
done
python benchmarks/graybox_fit.py --seconds 60 > $out/timing.log 2>&1 &
wait
tail -n 30 $out/*.log
