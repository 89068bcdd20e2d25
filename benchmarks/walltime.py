"""How far `mmzero plan`'s wall-time estimate is from what a run measured.

Calibrates the rates on one finished local run and predicts every stage of another (a run of
another seed, on the same machine), then prints measured vs estimated seconds per stage and in
all. Run the example twice first:

    uv run mmzero run examples/run.yaml --run-dir /tmp/wt/seed1/tiny
    (the same with `seed: 2` in a copy of the file) --run-dir /tmp/wt/seed2/tiny
    uv run python benchmarks/walltime.py /tmp/wt/seed1/tiny /tmp/wt/seed2/tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmzero_runtime.spec import load_run
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.planning.walltime import (
    calibrate,
    measured_seconds,
    stage_seconds,
    stage_work,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibrate", type=Path, help="run directory the rates come from")
    parser.add_argument("predict", type=Path, help="run directory whose stages are predicted")
    args = parser.parse_args()
    run = load_run(args.predict / "run.yaml")
    rates = calibrate(args.calibrate, load_run(args.calibrate / "run.yaml").spec)
    print(f"rates from {args.calibrate}: decode {rates.decode_tokens_per_second:.0f} tok/s, "
          f"train {rates.train_tokens_per_second:.0f} tok/s, overhead "
          f"{rates.overhead_seconds:.1f} s, fill "
          + ", ".join(f"{r} {f:.2f}" for r, f in sorted(rates.fill.items())))  # fmt: skip
    measured = measured_seconds(args.predict, run.spec)
    print("\n| stage | measured s | estimated s | error |\n| --- | --- | --- | --- |")
    total_measured = total_estimated = 0.0
    for stage in all_stages(run.spec):
        if stage.name not in measured:
            continue
        estimate = stage_seconds(stage_work(run.spec, stage), rates)
        assert estimate is not None
        total_measured += measured[stage.name]
        total_estimated += estimate
        error = estimate / measured[stage.name] - 1
        print(f"| {stage.name} | {measured[stage.name]:.0f} | {estimate:.0f} | {error:+.0%} |")
    error = total_estimated / total_measured - 1
    print(f"| all | {total_measured:.0f} | {total_estimated:.0f} | {error:+.0%} |")


if __name__ == "__main__":
    main()
