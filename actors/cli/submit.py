"""``corral submit``: one job from flags, or many from a file of JSON lines, or a workflow.

A file of job lines is submitted in chunks, each committed all-or-nothing, and each job's id
is printed as soon as its chunk is committed. Every line without its own ``idempotency_key``
gets ``file:<sha256 of the file's bytes>:<line number>``: running the same command again
after an interruption (a killed scheduler, Ctrl-C) prints every id again, submitting only
the lines that were not committed; an edited file is a new file, its lines new jobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec

from actors.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    client_of,
    id_arg,
    positive_float,
    run_async,
)
from actors.cli.output import quiet_on_closed_stdout
from actors.cli.times import parse_duration, parse_time
from actors.errors import CorralError

# Jobs per Submit frame for a file: an id is printed once its chunk commits, so a smaller
# chunk shows progress sooner and leaves less in doubt after a crash; 1,000 small jobs
# commit in a few milliseconds and keep the per-frame overhead negligible.
FILE_CHUNK = 1_000
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

FIELDS = (
    "task", "args", "kwargs", "priority", "queue", "depends_on", "max_retries",
    "idempotency_key", "timeout", "backoff", "delay", "run_at", "concurrency_key",
    "max_concurrent",
)  # fmt: skip


def usage(message: str) -> NoReturn:
    """The input was wrong (exit 2, like argparse): nothing was submitted."""
    print(f"corral: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


# The flag of each field whose name is not its flag's.
_FLAGS = {"task": "task", "run_at": "--at"}


def _spec_from_fields(fields: dict[str, Any], where: str, flags: bool = False) -> Any:
    """A JobSpec from a line's (or the flags') fields; ``where`` prefixes every message
    (``jobs.jsonl:3: max_retries: ...``, or ``--max-retries: ...`` for flags)."""
    from actors.cli.fields import field_problem
    from actors.client import job_spec
    from transport import protocol as wire

    unknown = set(fields) - set(FIELDS)
    if unknown:
        names = ", ".join(sorted(unknown))
        usage(f"{where}: unknown field(s) {names}; allowed: {', '.join(sorted(FIELDS))}")
    if not isinstance(fields.get("task"), str):
        usage(f"{where}: 'task' (a string) is required")
    if not isinstance(fields.get("args", []), list):
        usage(f"{where}: 'args' must be a JSON array")
    if not isinstance(fields.get("kwargs", {}), dict):
        usage(f"{where}: 'kwargs' must be a JSON object")
    _read_times(fields, where, flags)
    for name, value in fields.items():
        if name in ("args", "kwargs"):
            continue
        why = field_problem(name, value)
        if why is not None:
            label = _FLAGS.get(name, f"--{name.replace('_', '-')}") if flags else name
            usage(f"{label}: {why}" if flags else f"{where}: {name}: {why}")
    if fields.get("max_concurrent") is not None and fields.get("concurrency_key") is None:
        # The scheduler's admission check, said here: a usage error, nothing sent.
        text = "needs a concurrency key to count against"
        usage(
            f"--max-concurrent {text} (--concurrency-key)"
            if flags
            else f"{where}: max_concurrent {text}"
        )
    options = {k: v for k, v in fields.items() if k not in ("task", "args", "kwargs")}
    backoff = options.get("backoff")
    if isinstance(backoff, dict):
        options["backoff"] = msgspec.convert(backoff, wire.Backoff)
    try:
        spec = job_spec(fields["task"], fields.get("args", []), fields.get("kwargs"), **options)
        # Run the protocol's own validation now, for a local, precise message.
        msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=type(spec))
    except (TypeError, msgspec.ValidationError, CorralError) as exc:
        usage(f"{where}: {exc}")
    return spec


def _read_times(fields: dict[str, Any], where: str, flags: bool) -> None:
    """``delay`` and ``run_at`` as a person writes them ("30s", "2026-12-01T09:00:00Z")
    turned into seconds and a Unix time, in place; numbers stay as they are."""
    for name, parse in (("delay", parse_duration), ("run_at", parse_time)):
        value = fields.get(name)
        if isinstance(value, str):
            try:
                fields[name] = parse(value)
            except ValueError as exc:
                label = ("--at" if name == "run_at" else "--delay") if flags else f"{where}: {name}"
                usage(f"{label}: {exc}")


# The most bytes of --file read: far more jobs than anyone submits at once, and a bound on
# what a file that never ends (/dev/zero, a pipe left open) costs before it is refused.
MAX_FILE_BYTES = 256 * 1024 * 1024


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        usage(f"cannot read {path}: {exc.strerror}")
    if len(data) > MAX_FILE_BYTES:
        usage(f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB: split it")
    return data


def _loads(text: str) -> Any:
    """``json.loads``; JSON nested too deeply for Python's stack is invalid JSON too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _text(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        usage(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")


def _workflow_from_text(text: str, path: str) -> Any | None:
    """A workflow file is one JSON object with a "steps" list; anything else is JSON lines."""
    from transport import protocol as wire

    try:
        document = _loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict) or "steps" not in document:
        return None
    unknown = set(document) - {"name", "idempotency_key", "steps"}
    if unknown:
        usage(
            f"{path}: unknown workflow field(s) {', '.join(sorted(unknown))}; "
            "allowed: name, idempotency_key, steps"
        )
    if not isinstance(document["steps"], list) or not document["steps"]:
        usage(f"{path}: 'steps' must be a non-empty list of step objects")
    steps = []
    for number, fields in enumerate(document["steps"], 1):
        where = f"{path}: step #{number}"
        if not isinstance(fields, dict) or not isinstance(fields.get("name"), str):
            usage(f"{where}: each step is an object with a 'name' (a string)")
        fields = dict(fields)
        name, after = fields.pop("name"), fields.pop("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            usage(f"{where} ({name}): 'after' must be a list of step names")
        steps.append(wire.StepSpec(name, _spec_from_fields(fields, f"{where} ({name})"), after))
    return document.get("name", ""), document.get("idempotency_key"), steps


def line_key(digest: str, number: int) -> str:
    """The idempotency key of line ``number`` (1-based) of a file whose sha256 is ``digest``."""
    return f"file:{digest}:{number}"


def _specs_from_file(path: str, data: bytes) -> list[Any]:
    digest = hashlib.sha256(data).hexdigest()
    specs = []
    for number, line in enumerate(_text(data, path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = _loads(line)
        except json.JSONDecodeError as exc:
            usage(f"{path}:{number}: not valid JSON: {exc.msg}")
        if not isinstance(fields, dict):
            usage(f"{path}:{number}: each line must be a JSON object")
        fields.setdefault("idempotency_key", line_key(digest, number))
        specs.append(_spec_from_fields(fields, f"{path}:{number}"))
    if not specs:
        usage(f"{path} holds no jobs")
    return specs


def _specs_from_flags(args: argparse.Namespace) -> list[Any]:
    if args.task is None:
        usage("name a TASK to run, or pass --file FILE")
    fields: dict[str, Any] = {"task": args.task}
    if args.args_json is not None:
        try:
            value = _loads(args.args_json)
        except json.JSONDecodeError as exc:
            usage(f"ARGS_JSON is not valid JSON: {exc.msg} (example: '[1, 2]' or '{{\"x\": 1}}')")
        if isinstance(value, list):
            fields["args"] = value
        elif isinstance(value, dict):
            fields["kwargs"] = value
        else:
            usage("ARGS_JSON must be a JSON array (positional args) or object (keyword args)")
    for name in ("priority", "queue", "max_retries", "idempotency_key", "timeout", "backoff",
                 "concurrency_key", "max_concurrent"):  # fmt: skip
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.delay is not None:
        fields["delay"] = args.delay
    if args.at is not None:
        fields["run_at"] = args.at
    if args.depends_on:
        fields["depends_on"] = args.depends_on
    return [_spec_from_fields(fields, "job", flags=True)]


@quiet_on_closed_stdout
def cmd_submit(args: argparse.Namespace) -> None:
    from transport import protocol as wire

    workflow = None
    specs: list[Any] = []
    if args.file is not None:
        if args.task is not None:
            usage("give either TASK or --file, not both")
        data = _read_file(args.file)
        workflow = _workflow_from_text(_text(data, args.file), args.file)
        if workflow is not None and workflow[1] is None:
            # Like a line of JSON lines: the same file again is the same workflow.
            name, _, steps = workflow
            workflow = (name, f"file:{hashlib.sha256(data).hexdigest()}", steps)
        if workflow is None:
            specs = _specs_from_file(args.file, data)
    else:
        specs = _specs_from_flags(args)
    created: list[int] = []  # ids committed so far, in file order
    shown = 0  # how many of them are printed
    problem = ""

    def show(upto: int, label: Callable[[int], str] = lambda _: "") -> None:
        nonlocal shown
        for job_id in created[shown:upto]:
            print(f"{label(job_id)}{job_id}")
        shown = max(shown, upto)
        sys.stdout.flush()

    async def go() -> int:
        nonlocal problem, shown
        async with client_of(args) as client:
            labels: dict[int, str] = {}
            if workflow is not None:
                name, key, steps = workflow
                workflow_id, step_ids = await client.submit_workflow(steps, name, key)
                print(f"workflow {workflow_id}")
                created.extend(step_ids.values())
                labels = {job_id: f"{step} " for step, job_id in step_ids.items()}
            else:
                try:
                    async for ids in client.submit_chunks(
                        specs, chunk=FILE_CHUNK, require_worker=args.require_worker
                    ):
                        created.extend(ids)
                        if not args.wait:
                            show(len(created))
                except CorralError as exc:
                    if not created or args.file is None:
                        raise
                    show(len(created))
                    problem = (
                        f"{exc}\n{len(created)} of {len(specs)} job(s) were submitted "
                        "(their ids are printed above), and perhaps the chunk in flight; run the "
                        "same command again to submit the rest: every line has an "
                        "idempotency key, so no job is submitted twice"
                    )
                    return EXIT_FAILED
            if not args.wait:
                show(len(created), lambda job_id: labels.get(job_id, ""))
                return 0
            outcomes = await client.wait(created, args.wait_timeout)
            failed = 0
            for job_id in created:
                print(labels.get(job_id, ""), end="")
                outcome = outcomes[job_id]
                if outcome.status == "SUCCEEDED":
                    result = json.dumps(wire.unpack_for_view(outcome.result), default=str)
                    print(job_id, outcome.status, result)
                else:
                    failed += 1
                    print(job_id, outcome.status)
                    print(f"job {job_id} ended {outcome.status}: {outcome.error}", file=sys.stderr)
            shown = len(created)
            return EXIT_FAILED if failed else 0

    try:
        code = run_async(go())
    except KeyboardInterrupt:
        show(len(created))
        if created:
            print(
                f"corral: interrupted; the {len(created)} job(s) printed above were submitted "
                "and go on (`corral watch ID` follows one, `corral cancel ID` stops it)",
                file=sys.stderr,
            )
        else:
            print("corral: interrupted before any job was acknowledged", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    if problem:
        print(f"corral: error: {problem}", file=sys.stderr)
    raise SystemExit(code)


def add_submit_parser(
    add: Callable[..., argparse.ArgumentParser],
    connect_flag: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The ``submit`` subcommand's flags (called by ``actors.cli.main.build_parser``)."""
    p = add("submit", cmd_submit, "submit a job (or a file of jobs) and print the id(s)")
    p.add_argument("task", nargs="?", metavar="TASK", help="registered task name, e.g. tasks.add")
    p.add_argument(
        "args_json",
        nargs="?",
        metavar="ARGS_JSON",
        help="JSON array of positional args, or JSON object of keyword args",
    )
    p.add_argument(
        "--file",
        metavar="FILE",
        help="JSON lines, one job per line, same fields as the flags (or a workflow file). "
        "A line without an idempotency_key gets 'file:<sha256 of the file>:<line number>', "
        "so running the same command on the same file again (after a crash or Ctrl-C) "
        "submits only the lines not yet submitted and prints every id; an edited file's "
        "lines are new jobs. Ids are printed as each chunk of 1,000 lines is committed.",
    )
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="higher runs first, -1000000 to 1000000 (default 0)",
    )
    p.add_argument(
        "--queue", default=None, help="queue name: letters, digits, _ . : - (default: default)"
    )
    p.add_argument(
        "--depends-on",
        type=id_arg,
        nargs="+",
        metavar="ID",
        default=[],
        help="run only after these jobs succeeded",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="N",
        help="retries after a failure, 0 to 1000 (default 3)",
    )
    p.add_argument(
        "--idempotency-key",
        default=None,
        metavar="K",
        help="submitting K again returns the same job",
    )
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="per-attempt time limit"
    )
    p.add_argument(
        "--backoff",
        type=float,
        nargs=3,
        default=None,
        metavar=("BASE", "FACTOR", "CAP"),
        help="retry delays for this job: BASE*FACTOR^(n-1) capped at CAP seconds, "
        "with jitter (default: the scheduler's)",
    )
    p.add_argument(
        "--delay",
        default=None,
        metavar="DURATION",
        help="start no sooner than this long after the scheduler accepts it: 30, 30s, 5m, "
        "1h30m, 2d (the job is PENDING until then; cancel it like any other)",
    )
    p.add_argument(
        "--at",
        default=None,
        metavar="TIME",
        help="start no sooner than this ISO 8601 time, e.g. 2026-12-01T09:00:00Z "
        "(no time zone: this machine's local time)",
    )
    p.add_argument(
        "--concurrency-key",
        default=None,
        metavar="KEY",
        help="with --max-concurrent N: at most N jobs of KEY run at once, on all workers",
    )
    p.add_argument("--max-concurrent", type=int, default=None, metavar="N", help="see above")
    p.add_argument(
        "--require-worker",
        action="store_true",
        help="refuse at once (exit 1) if no connected worker has the task, "
        "instead of letting the job wait for one",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait and print each job's outcome and result"
    )
    p.add_argument(
        "--wait-timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="give up waiting after S seconds",
    )
    connect_flag(p)
