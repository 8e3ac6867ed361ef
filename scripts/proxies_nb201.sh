#!/bin/sh
# The NB201 proxy correlation study (results/proxies_nb201_*): one process at a time.
# Data-free proxies (synflow, zen) and the whole-space counts first, then the data-dependent
# proxies on a smaller sample (they cost ~10x more per network on CPU).
set -e
for ds in cifar10 cifar100 imagenet16; do
  collm-nas proxies --space nb201 --dataset "$ds" --proxies synflow,zen,params,flops \
    --sample "${FREE_SAMPLE:-300}" --seed 0 --out "results/proxies_nb201_${ds}.md"
done
for ds in cifar10 cifar100 imagenet16; do
  collm-nas proxies --space nb201 --dataset "$ds" \
    --proxies grad_norm,snip,grasp,fisher,jacob_cov,naswot,zico --sample "${DATA_SAMPLE:-60}" \
    --batch 32 --seed 0 --input gaussian --out "results/proxies_nb201_${ds}_data_gaussian.md"
done
