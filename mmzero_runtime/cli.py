"""`mmzero`: the command line. Each command is a thin shell over a library function.

Heavy imports happen inside the commands so that `mmzero --help` and `mmzero spec ...` stay
instant. Errors that name a user's mistake exit with status 2 and one clear message.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.spec import RunSpec, SpecError, json_schema, load_run, shown_path
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.launch import EXIT_FAILED, EXIT_USAGE, LOG_FORMAT
from mmzero_runtime.stages.graph.plan import STAGE_KINDS
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.training.errors import CheckpointError, TrainingError

DOMAIN_ERRORS = (StageError, StoreError, ModelError, RewardError, TrainingError, CheckpointError)
"""Failures with a message written for the user: printed without a traceback."""

SERVE_TOKEN_ENV = "MMZERO_SERVE_TOKEN"
"""Bearer token `mmzero serve` requires when set (from a Secret on a cluster)."""


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
    try:
        changed = spec_docs.update_file(Path(args.write))
    except (OSError, ValueError) as error:  # missing, a directory, not UTF-8, no markers
        print(
            f"error: {shown_path(args.write)}: {_file_problem(error, args.write)}", file=sys.stderr
        )
        return EXIT_USAGE
    print(f"{args.write}: {'updated' if changed else 'already current'}")
    return 0


def _file_problem(error: OSError | ValueError, path: str) -> str:
    """Why a file named on the command line cannot be used, as one line after its path."""
    if isinstance(error, OSError):
        return f"cannot use it ({error.strerror or error}); check the path"
    return " ".join(str(error).split()).removeprefix(f"{path}: ")


def _plan(args: argparse.Namespace) -> int:
    run = load_run(args.file)  # a bad file is refused before the imports below (torch: seconds)
    from mmzero_runtime.stages.planning.summary import plan_summary

    too_big = plan_summary(run, Path(args.calibrate) if args.calibrate else None, print)
    if too_big:
        print(f"error: {too_big}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _render(args: argparse.Namespace) -> int:
    from mmzero_runtime.render import render_file

    spec = load_run(args.spec).spec if args.spec else RunSpec()
    try:
        result = render_file(Path(args.svg), Path(args.png), spec.render, spec.image)
    except OSError as error:  # the SVG cannot be read, or the PNG cannot be written
        where = str(error.filename or args.svg)
        print(f"error: {shown_path(where)}: {_file_problem(error, where)}", file=sys.stderr)
        return EXIT_FAILED
    if not result.ok:
        print(f"error: {args.svg}: {result.reason}: {result.detail}", file=sys.stderr)
        return 1
    print(f"{args.png}: {result.width}x{result.height} PNG in {result.seconds:.2f} s")
    return 0


def _serve(args: argparse.Namespace) -> int:
    spec = load_run(args.spec).spec if args.spec else RunSpec()
    token = os.environ.get(SERVE_TOKEN_ENV) or None
    if args.render:
        from mmzero_runtime.render import Renderer
        from mmzero_runtime.serving.render_server import RenderServer

        render = spec.render.model_copy(update={"workers": args.workers or spec.render.workers})
        with Renderer(render, spec.image) as renderer:
            server = RenderServer(renderer, host=args.host, port=args.port, token=token,
                                  queue_size=args.queue_size)  # fmt: skip
            return _serve_until_stopped(server, "the render sandbox")
    if bool(args.model) == bool(args.key) or (args.key and not args.spec):
        print(
            "error: serve one model: a directory, or --key KEY --spec run.yaml for a checkpoint "
            "of a run's store (or pass --render)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return _serve_model(args, spec, token)


def _serve_until_stopped(server: Any, what: str) -> int:
    server.start()
    print(f"serving {what} at {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _serve_model(args: argparse.Namespace, spec: RunSpec, token: str | None) -> int:
    from mmzero_runtime.models.loading import pick_device
    from mmzero_runtime.serving.server import model_server
    from mmzero_runtime.stages.execution.transfer import served_checkpoint, served_model

    if args.key:  # a checkpoint of the run's store, checked against its stage's manifest
        _, store = _run_store(args)
        path, digest = served_checkpoint(store, args.key, args.wait_seconds)
    else:
        path, digest = served_model(args.model, args.digest)
    server = model_server(
        path,
        digest,
        spec.image,
        device=pick_device(args.device),
        max_prompt_tokens=args.max_prompt_tokens,
        batch_size=args.batch_size,
        host=args.host,
        port=args.port,
        token=token,
        max_tokens=args.max_tokens,
        queue_size=args.queue_size,
    )
    return _serve_until_stopped(server, f"{path} ({digest})")


def _run_store(args: argparse.Namespace) -> tuple[Any, Any]:
    """(run, store) of the run file `--spec`, at `--run-dir` or where the spec says."""
    from mmzero_runtime.stages.execution.runner import open_run

    return open_run(args.spec, Path(args.run_dir) if args.run_dir else None)


def _import(args: argparse.Namespace) -> int:
    from mmzero_runtime.stages.execution.transfer import import_base_model

    run, store = _run_store(args)
    manifest = import_base_model(run, store, Path(args.model))
    print(f"base model of run {run.metadata.name}: {manifest.digest('model')} in {store}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mmzero_runtime.stages.execution.transfer import export_checkpoint

    run, store = _run_store(args)
    digest_file = Path(args.digest_file) if args.digest_file else None
    key, digest = export_checkpoint(run, store, args.role, args.iteration, Path(args.out),
                                    digest_file)  # fmt: skip
    print(f"{key} ({digest}) written to {args.out}; serve it with `vllm serve {args.out}`")
    return 0


def _run(args: argparse.Namespace) -> int:
    from mmzero_runtime.models.loading import pick_device
    from mmzero_runtime.stages.execution.local import load_effective, run_local
    from mmzero_runtime.stages.execution.runner import open_store, run_dir

    run = load_effective(Path(args.file), args.iterations)
    directory = Path(args.run_dir) if args.run_dir else run_dir(run)
    ran = run_local(run, directory, until=args.until, device=pick_device(args.device))
    from mmzero_runtime.report.page import build_report

    report = build_report(open_store(run, directory))
    print(f"run {run.metadata.name}: {len(ran)} stage(s) run; outputs in {directory}")
    print(f"report: {report}")
    return 0


def _stage(args: argparse.Namespace) -> int:
    run = load_run(args.spec)  # a bad file is refused before the imports below (torch: seconds)
    from mmzero_runtime.models.loading import pick_device
    from mmzero_runtime.stages.execution.runner import run_dir
    from mmzero_runtime.stages.execution.stage_command import linger, run_stage_process
    from mmzero_runtime.stages.process.shards import Shard

    directory = Path(args.run_dir) if args.run_dir else run_dir(run)
    shard = Shard(args.shard, args.shards)
    done = run_stage_process(run, directory, args.kind, args.iteration,
                             device=pick_device(args.device), shard=shard, warn=_warn)  # fmt: skip
    if done.manifest is None and args.shards > 1:
        print(f"stage i{args.iteration}-{args.kind}: shard {args.shard} of {args.shards} done")
        return 0
    if done.manifest is None:
        print(f"stage i{args.iteration}-{args.kind}: rank {done.rank} done; rank 0 publishes")
        return 0
    print(f"stage i{args.iteration}-{args.kind}: done ({len(done.manifest.files)} files)")
    linger()  # one last scrape sees the final figures of a short-lived pod
    return 0


def _warn(problem: str) -> None:
    print(f"warning: {problem}", file=sys.stderr)


def _status(args: argparse.Namespace) -> int:
    if Path(args.run).is_dir():
        from mmzero_runtime.stages.execution.local import status_lines

        print("\n".join(status_lines(Path(args.run))))
        return 0
    from mmzero_runtime.stages.execution.cluster_status import fetch, status_line

    print(status_line(fetch(args.run, args.namespace)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from mmzero_runtime.report.page import build_report
    from mmzero_runtime.stages.execution.runner import open_run_at

    _, store = open_run_at(Path(args.run))
    print(f"report: {build_report(store)}")
    return 0


def _init_tiny(args: argparse.Namespace) -> int:
    from mmzero_runtime.warmstart.build import init_tiny

    path = init_tiny(force=args.force)
    print(f"tiny model ready: {path}")
    return 0


def _where_and_device(command: argparse.ArgumentParser) -> None:
    """The options `run` and `stage` share: where the run lives and what computes."""
    command.add_argument("--run-dir", help="run directory (default: <spec.storage.uri>/<name>)")
    command.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the usage block), naming the command and
    where its options are listed; the subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        problem = _printable(message)  # argparse quotes a bad value, but not an unknown one
        self.exit(EXIT_USAGE, f"{self.prog}: error: {problem}; see `{self.prog} --help`\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    docs.add_argument("--write", metavar="FILE", help="refresh its block in FILE: docs/spec.md")
    docs.set_defaults(func=_spec_docs)

    plan = commands.add_parser("plan", help="print the stage graph of a run")
    plan.add_argument("file", help="MMZeroRun YAML file")
    plan.add_argument(
        "--calibrate",
        metavar="RUN_DIR",
        help="a run finished on this machine: wall times from its measured rates",
    )
    plan.set_defaults(func=_plan)

    render = commands.add_parser("render", help="render one SVG through the sandbox")
    render.add_argument("svg", help="input SVG file")
    render.add_argument("png", help="output PNG file (written only on success)")
    render.add_argument("--spec", help="run file whose render limits and pixel budget to use")
    render.set_defaults(func=_render)

    serve = commands.add_parser(
        "serve", help="serve a frozen role (OpenAI-compatible API), or the render sandbox"
    )
    serve.add_argument("model", nargs="?", help="model directory (or builtin:tiny)")
    serve.add_argument("--key", help="artifact key of a checkpoint in the run's store (--spec)")
    serve.add_argument("--run-dir", help="run directory (default: <spec.storage.uri>/<name>)")
    serve.add_argument(
        "--wait-seconds", type=float, default=1800, help="with --key: wait this long for it"
    )
    serve.add_argument("--render", action="store_true", help="serve the SVG render sandbox")
    serve.add_argument("--workers", type=int, help="render worker processes (default: cores)")
    serve.add_argument(
        "--digest",
        help="checkpoint digest to report (default: as a run manifest gives it)",
    )
    serve.add_argument("--spec", help="run file whose image and render settings to use")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    serve.add_argument("--max-prompt-tokens", type=int, default=4096)
    serve.add_argument("--max-tokens", type=int, default=4096, help="largest max_tokens allowed")
    serve.add_argument("--batch-size", type=int, default=16, help="sequences per model call")
    serve.add_argument("--queue-size", type=int, default=64, help="requests waiting, then 503")
    serve.set_defaults(func=_serve)

    imports = commands.add_parser("import", help="store a local model as a run's base model")
    imports.add_argument("model", help="Hugging Face model directory (save_pretrained layout)")
    imports.add_argument("--spec", required=True, help="the run's MMZeroRun file")
    imports.add_argument("--run-dir", help="run directory (default: <spec.storage.uri>/<name>)")
    imports.set_defaults(func=_import)

    export = commands.add_parser(
        "export", help="write a role's checkpoint as a plain Hugging Face directory"
    )
    export.add_argument("out", help="new directory to write")
    export.add_argument("--spec", required=True, help="the run's MMZeroRun file")
    export.add_argument("--role", required=True, choices=["proposer", "coder", "solver"])
    export.add_argument("--iteration", type=int, help="after this iteration (default: latest)")
    export.add_argument("--run-dir", help="run directory (default: <spec.storage.uri>/<name>)")
    export.add_argument("--digest-file", help="also write the checkpoint's digest to this file")
    export.set_defaults(func=_export)

    run = commands.add_parser("run", help="run a whole MM-Zero run on this machine")
    run.add_argument("file", help="MMZeroRun YAML file")
    run.add_argument("--iterations", type=int, help="override spec.iterations (extend a run)")
    run.add_argument(
        "--until", choices=STAGE_KINDS, help="stop after this stage kind of the last iteration"
    )
    _where_and_device(run)
    run.set_defaults(func=_run)

    stage = commands.add_parser("stage", help="run one stage (what executors call)")
    stage.add_argument("kind", choices=STAGE_KINDS, help="stage kind")
    stage.add_argument("--spec", required=True, help="MMZeroRun YAML file")
    stage.add_argument("--iteration", type=int, required=True, help="iteration, from 1")
    stage.add_argument(
        "--shards", type=int, default=1, help="split a batch stage's items into this many blocks"
    )
    stage.add_argument("--shard", type=int, default=0, help="the block to do, from 0")
    _where_and_device(stage)
    stage.set_defaults(func=_stage)

    status = commands.add_parser("status", help="show where a run is (local or on a cluster)")
    status.add_argument("run", help="a local run directory, or the name of a run on a cluster")
    status.add_argument("-n", "--namespace", help="namespace of a cluster run (kubectl's default)")
    status.set_defaults(func=_status)

    report = commands.add_parser("report", help="write <run>/report.html")
    report.add_argument("run", help="run directory, or the run file (for a run stored in S3)")
    report.set_defaults(func=_report)

    tiny = commands.add_parser("init-tiny", help="build and warm-start the tiny offline model")
    tiny.add_argument("--force", action="store_true", help="rebuild even if cached")
    tiny.set_defaults(func=_init_tiny)
    return parser


def _one_message(error: Exception) -> str:
    """An error as one message on stderr: its lines stay only where they list items (indented,
    as a run spec's wrong fields are); any other line break or control character, from a path
    named on the command line or a library's text, is shown escaped.

    >>> print(_one_message(ValueError("run.yaml\\n: cannot read\\n  spec.x: wrong\\r")))
    run.yaml\\n: cannot read
      spec.x: wrong\\r
    """
    lines: list[str] = []
    for line in str(error).split("\n"):
        if lines and not line.startswith("  "):
            lines[-1] += "\\n" + line
        else:
            lines.append(line)
    return "\n".join(_printable(line) for line in lines)


def _printable(text: str) -> str:
    """`text` with its control characters escaped, so that it stays on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mmzero` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.func is _stage:
        from mmzero_runtime.stages.errors import StageError
        from mmzero_runtime.stages.process.shards import Shard

        try:
            Shard(args.shard, args.shards)
        except StageError as error:
            parser.error(str(error))  # exit 2: a usage error, no retry on a cluster
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SpecError as error:
        print(f"error: {_one_message(error)}", file=sys.stderr)
        return EXIT_USAGE
    except DOMAIN_ERRORS as error:
        print(f"error: {_one_message(error)}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
