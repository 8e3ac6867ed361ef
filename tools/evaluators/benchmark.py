"""Tabular evaluator for NAS-Bench-201: O(1) lookup of valid/test accuracy by cell key."""

from __future__ import annotations

import csv
import math
from functools import cache
from itertools import product
from pathlib import Path

from collm_nas.spaces import SearchSpace, get_space
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.spaces.nb201 import NB201Space
from collm_nas.tools.data import DataFileError, find_data_file
from collm_nas.tools.evaluators import require_space
from pydantic import BaseModel

NB201_FILE = "nb201.csv"
NB201_ROWS = 15625
NB201_DATASETS = NB201Space.datasets  # also the order of the table's columns
HOW_TO_GET_NB201 = (
    "Get NAS-Bench-201 (NAS-Bench-201-v1_1-096897.pth, github D-X-Y/NAS-Bench-201) or the "
    "NATS-Bench topology file (NATS-tss-v1_0-3ffb9-simple, github D-X-Y/NATS-Bench) and convert "
    "it with:  collm-nas data nb201 --from FILE"
)


class NB201Benchmark(Evaluator):
    """Looks up the 200-epoch NAS-Bench-201 accuracies of a cell on one dataset."""

    kind = "benchmark"
    thread_safe = True  # read-only dict lookups
    cheap = True

    def __init__(self, space: NB201Space, dataset: str, table: dict[str, tuple[float, ...]]):
        self.dataset = dataset
        self.space = space
        column = NB201_DATASETS.index(dataset)
        self._acc = {key: (row[2 * column], row[2 * column + 1]) for key, row in table.items()}

    def evaluate(self, arch: BaseModel) -> Metrics:
        valid, test = self._acc[self.space.key(arch)]
        return Metrics(valid_acc=valid, test_acc=test)

    def optimum(self, objective: str) -> float:
        """The best score any cell reaches on this dataset (for optimum-found rates)."""
        index = 0 if objective == "valid" else 1
        return max(acc[index] for acc in self._acc.values())

    def top_threshold(self, objective: str, share: float) -> float:
        """The score that puts a cell in the space's top `share` (e.g. 0.01 for the top 1 %)."""
        index = 0 if objective == "valid" else 1
        scores = sorted((acc[index] for acc in self._acc.values()), reverse=True)
        return scores[max(0, int(share * len(scores)) - 1)]


def benchmark_evaluator(
    space: SearchSpace, dataset: str, data_path: str | None = None
) -> NB201Benchmark:
    """The `benchmark` evaluator kind: NAS-Bench-201 lookups (entry point in pyproject.toml)."""
    require_space(space, NB201Space, "benchmark")
    space.check_dataset(dataset)
    return NB201Benchmark(space, dataset, read_nb201_table(str(data_path) if data_path else None))


def load_nb201(dataset: str, path: str | Path | None = None) -> NB201Benchmark:
    """The NB201 evaluator for `dataset`, reading the table found by the data settings."""
    return benchmark_evaluator(get_space("nb201"), dataset, str(path) if path else None)


@cache
def read_nb201_table(path: str | None = None) -> dict[str, tuple[float, ...]]:
    """arch_str -> (c10 valid, c10 test, c100 valid, c100 test, in16 valid, in16 test)."""
    file = find_data_file(NB201_FILE, path, HOW_TO_GET_NB201)
    columns = [f"{ds}_{split}_acc" for ds in NB201_DATASETS for split in ("valid", "test")]
    table: dict[str, tuple[float, ...]] = {}
    try:
        with open(file, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ["arch_str", *columns] if c not in (reader.fieldnames or [])]
            if missing:
                raise DataFileError(f"{file} is not an NB201 table: missing columns {missing}")
            for line, row in enumerate(reader, start=2):
                try:
                    values = tuple(float(row[c]) for c in columns)
                except (TypeError, ValueError):
                    raise DataFileError(
                        f"{file} line {line}: a value is missing or not a number "
                        "(the file may be truncated or damaged)"
                    ) from None
                if not all(math.isfinite(v) and 0 <= v <= 100 for v in values):
                    raise DataFileError(
                        f"{file} line {line}: an accuracy outside 0-100 ({max(values, key=abs):g}); "
                        f"the table is damaged or not in percent. {HOW_TO_GET_NB201}"
                    )
                table[row["arch_str"]] = values
    except UnicodeDecodeError:
        raise DataFileError(f"{file} is not a text CSV file") from None
    if len(table) != NB201_ROWS:
        raise DataFileError(
            f"{file} holds {len(table)} distinct cells, expected {NB201_ROWS}: the file is "
            f"truncated or not the NAS-Bench-201 table. {HOW_TO_GET_NB201}"
        )
    unknown = sorted(table.keys() - every_cell_key())
    if unknown:  # with one row per cell, each row that is no cell hides a cell a search asks for
        raise DataFileError(
            f"{file}: {len(unknown)} rows are no NAS-Bench-201 cell (e.g. {unknown[0]!r}), so as "
            "many cells are missing: the table is damaged or not in the canonical notation. "
            f"{HOW_TO_GET_NB201}"
        )
    return table


def every_cell_key() -> set[str]:
    """The canonical key of every NAS-Bench-201 cell."""
    space = get_space("nb201")
    return {space.key(space.from_genes(genes)) for genes in product(*space.dimensions.values())}
