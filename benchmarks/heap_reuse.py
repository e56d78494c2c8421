"""Training speed and memory with glibc's heap kept (``POINTSUP_GLIBC_HEAP_DEFAULTS=0``) against glibc's defaults.

Usage: python benchmarks/heap_reuse.py [--pairs 3] [--json FILE] -- TRAIN_THROUGHPUT_ARGS...

Runs ``benchmarks/train_throughput.py`` with the arguments after ``--`` (precision fp32) as
whole processes, in pairs: glibc's defaults (``POINTSUP_GLIBC_HEAP_DEFAULTS=1``, pointsup's
default) then the kept heap (``=0``, :mod:`pointsup.utils.heap`), ``--pairs`` times, so a drift
of the machine's speed affects both alike. Prints, per process: the median seconds per timed iteration (from
train_throughput), the process's system CPU seconds, minor page faults and peak resident set;
then the medians and the speed-up of the paired per-iteration times.

Example (the R50-FPN CPU set-up of docs/results_speed.md)::

    python benchmarks/heap_reuse.py --pairs 3 -- --device cpu --precisions fp32 --iterations 3 \\
        --warmup 1 --batch 2 --workers 0 --coco TRAIN_JSON:IMAGES model.backbone.norm=gn \\
        model.fpn.norm=gn model.backbone.trainable_layers=5 "data.min_size_train=[480]" \\
        data.max_size_train=800
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._child import last_log_line, run_child  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402
from pointsup.utils.heap import HEAP_SETTING_VARIABLE  # noqa: E402

THROUGHPUT_SCRIPT = Path(__file__).resolve().parent / "train_throughput.py"
SETTINGS = {"glibc defaults": {HEAP_SETTING_VARIABLE: "1"}, "heap kept": {HEAP_SETTING_VARIABLE: "0"}}


def run_once(setting: str, throughput_args: list[str], scratch: Path) -> dict:
    """One train_throughput process under ``setting``: its timing row and its own resource usage."""
    rows_file, log_file = scratch / "rows.json", scratch / "stderr.txt"
    env = {**os.environ, **SETTINGS[setting]}
    command = [sys.executable, str(THROUGHPUT_SCRIPT), *throughput_args, "--json", str(rows_file)]
    child = run_child(command, env, log_file, log_stdout=False)
    if child.exit_code != 0:
        raise SystemExit(f"error: train_throughput.py failed under {setting!r}: {last_log_line(log_file)}")
    row = next(r for r in json.loads(rows_file.read_text()) if r["precision"] == "fp32")
    return {
        "setting": setting,
        "s_per_iter": row["median_s_per_iter"],
        "system_s": child.usage.ru_stime,
        "minor_faults": child.usage.ru_minflt,
        "peak_rss_mb": child.peak_rss_mb,
    }


def measure(pairs: int, throughput_args: list[str]) -> list[dict]:
    """``pairs`` x (glibc defaults, heap kept), in turn."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="heap_reuse_") as scratch:
        for pair in range(pairs):
            for setting in SETTINGS:
                run = {"pair": pair, **run_once(setting, throughput_args, Path(scratch))}
                runs.append(run)
                print(f"pair {pair + 1}/{pairs}, {setting}: {run['s_per_iter']:.3f} s/iter", file=sys.stderr)
    return runs


# (key of a run, label, format) of the figures whose medians the table compares
FIGURES = (("s_per_iter", "s/iter", ".3f"), ("system_s", "system s", ".1f"), ("minor_faults", "minor faults", ",.0f"),
           ("peak_rss_mb", "peak RSS MB", ".0f"))  # fmt: skip


def table(runs: list[dict]) -> str:
    header = f"{'setting':<15} {'s/iter (median)':>16} {'system s':>9} {'minor faults':>13} {'peak RSS MB':>12}"
    lines = [header]
    for run in sorted(runs, key=lambda r: list(SETTINGS).index(r["setting"])):
        lines.append(
            f"{run['setting']:<15} {run['s_per_iter']:>16.3f} {run['system_s']:>9.1f} {run['minor_faults']:>13,} {run['peak_rss_mb']:>12.0f}"
        )
    defaults, kept = ([r for r in runs if r["setting"] == setting] for setting in SETTINGS)
    lines += ["", "medians, glibc defaults -> heap kept:"]
    for key, label, spec in FIGURES:
        before, after = statistics.median(r[key] for r in defaults), statistics.median(r[key] for r in kept)
        lines.append(f"  {label} {before:{spec}} -> {after:{spec}}")
    speedups = [d["s_per_iter"] / k["s_per_iter"] for d, k in zip(defaults, kept, strict=True)]
    lines.append(
        f"speed-up per pair (defaults / kept): {', '.join(f'{x:.3f}x' for x in speedups)}; median {statistics.median(speedups):.3f}x"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    own, throughput_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="(defaults, kept) pairs of processes (default 3)")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args(own)
    if args.pairs < 1:
        parser.error("--pairs: at least 1")
    if not sys.platform.startswith("linux"):
        parser.error("glibc's heap setting exists on Linux only")
    runs = measure(args.pairs, [*throughput_args, "--precisions", "fp32"])
    print(table(runs))
    if args.json:
        write_json_atomic(args.json, runs)


if __name__ == "__main__":
    main()
