"""`mmzero`: the command line. Each command is a thin shell over a library function.

Heavy imports happen inside the commands so that `mmzero --help` and `mmzero spec ...` stay
instant. Errors that name a user's mistake exit with status 2 and one clear message.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mmzero_runtime.spec import RunSpec, SpecError, json_schema, load_run

EXIT_USAGE = 2


def _spec_validate(args: argparse.Namespace) -> int:
    for path in args.files:
        run = load_run(path)
        print(f"{path}: ok (run {run.metadata.name}, {run.spec.iterations} iteration(s))")
    return 0


def _spec_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0


def _spec_docs(args: argparse.Namespace) -> int:
    from mmzero_runtime import spec_docs

    if args.write is None:
        print(spec_docs.reference_markdown())
        return 0
    changed = spec_docs.update_file(Path(args.write))
    print(f"{args.write}: {'updated' if changed else 'already current'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from mmzero_runtime.stages.plan import all_stages

    run = load_run(args.file)
    stages = all_stages(run.spec)
    print(f"run {run.metadata.name}: {run.spec.iterations} iteration(s), {len(stages)} stages")
    for stage in stages:
        inputs = ", ".join(f"{purpose}={key}" for purpose, key in stage.inputs)
        after = ", ".join(stage.depends_on) or "-"
        print(f"{stage.name:<22} gpus={stage.gpus:<3} after={after}")
        print(f"{'':<22} in: {inputs}")
        print(f"{'':<22} out: {stage.output}/")
    return 0


def _render(args: argparse.Namespace) -> int:
    from mmzero_runtime.render import render_file

    spec = load_run(args.spec).spec if args.spec else RunSpec()
    result = render_file(Path(args.svg), Path(args.png), spec.render, spec.image)
    if not result.ok:
        print(f"error: {args.svg}: {result.reason}: {result.detail}", file=sys.stderr)
        return 1
    print(f"{args.png}: {result.width}x{result.height} PNG in {result.seconds:.2f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmzero", description="MM-Zero: self-evolving VLM training from zero data."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True)

    spec = commands.add_parser("spec", help="check, describe or export the run spec")
    spec_commands = spec.add_subparsers(dest="spec_command", required=True)
    validate = spec_commands.add_parser("validate", help="validate run files")
    validate.add_argument("files", nargs="+", help="MMZeroRun YAML files")
    validate.set_defaults(func=_spec_validate)
    schema = spec_commands.add_parser("schema", help="print the run file's JSON schema")
    schema.set_defaults(func=_spec_schema)
    docs = spec_commands.add_parser("docs", help="print or refresh the spec reference")
    docs.add_argument("--write", metavar="FILE", help="refresh the generated block in FILE")
    docs.set_defaults(func=_spec_docs)

    plan = commands.add_parser("plan", help="print the stage graph of a run")
    plan.add_argument("file", help="MMZeroRun YAML file")
    plan.set_defaults(func=_plan)

    render = commands.add_parser("render", help="render one SVG through the sandbox")
    render.add_argument("svg", help="input SVG file")
    render.add_argument("png", help="output PNG file (written only on success)")
    render.add_argument("--spec", help="run file whose render limits and pixel budget to use")
    render.set_defaults(func=_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mmzero` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
