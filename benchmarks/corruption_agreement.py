"""How closely each corruption of each corruption set follows the hendrycks script that made the set: a markdown table
from the committed fixtures (tests/fixtures/<set>/reference.npz, all images and severities), no reference needed.

    python benchmarks/corruption_agreement.py [--sets all]

Per set and corruption: `exact` when every stored value equals the script's, `within one level` when none differs by
more than one grey level (with the share of exact values), `off` otherwise (with the largest difference).
"""

import argparse
from pathlib import Path

import numpy as np

from timm_assemble.evaluation import corruptions
from timm_assemble.evaluation.corruption_sets import CORRUPTION_SETS

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def agreement(set_name: str) -> dict[str, tuple[int, float]]:
    """corruption -> (largest difference in grey levels, share of exact values) over the fixture's images."""
    with np.load(FIXTURES / set_name.replace("-", "_") / "reference.npz") as data:
        ref = {k: data[k] for k in data.files}
    rows, out = ref["rows"], {}
    for number, name in enumerate(corruptions.ALL_CORRUPTIONS):
        diffs = [
            np.abs(
                corruptions.corrupt(image, name, s, 1000 * i + 10 * number + s, set_name)[rows][:, rows].astype(int)
                - ref[name][i, s - 1]
            )
            for i, image in enumerate(ref["images"])
            for s in range(1, 6)
        ]
        out[name] = (int(max(d.max() for d in diffs)), float(np.mean([(d == 0).mean() for d in diffs])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="all", help="corruption sets, comma-separated, or all (default)")
    args = parser.parse_args()
    sets = list(CORRUPTION_SETS) if args.sets == "all" else [s.strip() for s in args.sets.split(",")]
    unknown = [s for s in sets if s not in CORRUPTION_SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(CORRUPTION_SETS)}")
    print("| set | exact | within one grey level (share of exact values) | off |\n|---|---|---|---|")
    for set_name in sets:
        found = agreement(set_name)
        exact = [n for n, (d, _) in found.items() if d == 0]
        near = [f"{n} ({share:.2%})" for n, (d, share) in found.items() if d == 1]
        off = [f"{n} (up to {d})" for n, (d, _) in found.items() if d > 1]
        print(f"| {set_name} | {len(exact)} of {len(found)} | {', '.join(near) or '-'} | {', '.join(off) or '-'} |")


if __name__ == "__main__":
    main()
