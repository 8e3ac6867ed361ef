#!/bin/sh
# The NB201 proxy correlation study (results/proxies_nb201_*): one process at a time, one thread,
# sized for a shared 2-core machine. Data-free proxies (synflow, zen; zen on a batch of 16) and
# the whole-space counts (params, flops) per dataset on 100 cells, then the data-dependent
# proxies on 30 cells (they cost ~10x more per network on CPU).
set -e
for ds in cifar10 cifar100 imagenet16; do
  collm-nas proxies --space nb201 --dataset "$ds" --proxies synflow,zen,params,flops \
    --sample 100 --batch 16 --seed 0 --out "results/proxies_nb201_${ds}.md"
done
collm-nas proxies --space nb201 --dataset cifar10 \
  --proxies naswot,snip,grad_norm,jacob_cov,zico,fisher,grasp --sample 30 --batch 16 --seed 0 \
  --input gaussian --out results/proxies_nb201_cifar10_data_gaussian.md
python -c "from pathlib import Path; from collm_nas.evals.proxies import write_summary as w; \
w([Path(f'results/proxies_nb201_{d}.json') for d in ('cifar10', 'cifar100', 'imagenet16')] \
+ [Path('results/proxies_nb201_cifar10_data_gaussian.json')], Path('results/proxies_nb201_summary.md'))"
# Larger samples, run after the above (their files end in _300 and _100):
for ds in cifar10 cifar100 imagenet16; do
  collm-nas proxies --space nb201 --dataset "$ds" --proxies synflow,zen \
    --sample 300 --batch 16 --seed 0 --out "results/proxies_nb201_${ds}_300.md"
done
collm-nas proxies --space nb201 --dataset cifar10 \
  --proxies naswot,snip,grad_norm,jacob_cov,zico,fisher,grasp --sample 100 --batch 16 --seed 0 \
  --input gaussian --out results/proxies_nb201_cifar10_data_gaussian_100.md
python -c "from pathlib import Path; from collm_nas.evals.proxies import write_summary as w; \
w([Path(f'results/proxies_nb201_{d}_300.json') for d in ('cifar10', 'cifar100', 'imagenet16')] \
+ [Path('results/proxies_nb201_cifar10_data_gaussian_100.json')], Path('results/proxies_nb201_summary_300.md'))"
# Synflow and zen on 1,000 cells per dataset (summary: results/proxies_nb201_summary_1000.md):
for ds in imagenet16 cifar100 cifar10; do
  collm-nas proxies --space nb201 --dataset "$ds" --proxies synflow,zen \
    --sample 1000 --batch 16 --seed 0 --out "results/proxies_nb201_${ds}_1000.md"
done
python -c "from pathlib import Path; from collm_nas.evals.proxies import write_summary as w; \
w([Path(f'results/proxies_nb201_{d}_1000.json') for d in ('cifar10', 'cifar100', 'imagenet16')], \
Path('results/proxies_nb201_summary_1000.md'))"
