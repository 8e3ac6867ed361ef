"""Count what happened to every proposed candidate of one run, round by round: evaluated,
illegal, over the cost limit, duplicate, ... (the `candidate` events of its run folder).

    python scripts/proposal_verdicts.py runs/<id> --out results/autoformer_paper_proposals.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    events = [json.loads(line) for line in (args.run_dir / "events.jsonl").read_text().splitlines()
              if line.strip()]
    candidates = [e for e in events if e["event"] == "candidate"]
    if not candidates:
        sys.exit(f"{args.run_dir} logged no candidates yet")
    per_round: dict[int, Counter] = {}
    for event in candidates:
        per_round.setdefault(event["iteration"], Counter())[event["verdict"]] += 1
    verdicts = sorted({v for counts in per_round.values() for v in counts},
                      key=lambda v: (v != "evaluated", v))
    settings = json.loads((args.run_dir / "config.json").read_text())["settings"]
    limit = (f", {settings['cost_kind']} <= {settings['max_cost']}" if settings.get("max_cost")
             else "")
    lines = [
        "# What happened to each proposal, per round",
        "",
        f"Command: `python {shlex.join(sys.argv)}`",
        "",
        f"Run `{args.run_dir}`: space {settings['space']}, mode {settings['mode']}{limit}, "
        f"{settings['candidates']} candidates a round.",
        "",
        "| round | " + " | ".join(verdicts) + " | proposed |",
        "|---" * (len(verdicts) + 2) + "|",
    ]
    total = Counter()
    for number in sorted(per_round):
        counts = per_round[number]
        total.update(counts)
        lines.append(f"| {number} | " + " | ".join(str(counts.get(v, 0)) for v in verdicts)
                     + f" | {sum(counts.values())} |")
    lines.append("| all | " + " | ".join(str(total.get(v, 0)) for v in verdicts)
                 + f" | {sum(total.values())} |")
    reasons = Counter(e.get("reason", "") for e in candidates if e["verdict"] != "evaluated")
    if reasons:
        lines += ["", "Reasons given for rejections (count):", ""]
        lines += [f"- {count} x {reason}" for reason, count in reasons.most_common(10)]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
