#!/bin/sh
# The NB201 proxy correlation study (results/proxies_nb201_*): one process at a time, one thread.
# Data-free proxies (synflow, zen) and the whole-space counts (params, flops) per dataset, then
# the data-dependent proxies on a smaller sample (they cost ~10x more per network on CPU).
# Samples as run on the shared 2-core machine: cifar10 300, cifar100 and imagenet16 150.
set -e
collm-nas proxies --space nb201 --dataset cifar10 --proxies synflow,zen,params,flops \
  --sample 300 --seed 0 --out results/proxies_nb201_cifar10.md
for ds in cifar100 imagenet16; do
  collm-nas proxies --space nb201 --dataset "$ds" --proxies synflow,zen,params,flops \
    --sample 150 --seed 0 --out "results/proxies_nb201_${ds}.md"
done
collm-nas proxies --space nb201 --dataset cifar10 \
  --proxies naswot,snip,grad_norm,jacob_cov,zico,fisher,grasp --sample 30 --batch 16 --seed 0 \
  --input gaussian --out results/proxies_nb201_cifar10_data_gaussian.md
