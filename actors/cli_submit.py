"""``corral submit``: one job from flags, or many from a file of JSON lines, or a workflow."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgspec

from actors.cli_common import EXIT_FAILED, fail, run_async


def _spec_from_fields(fields: dict[str, Any], where: str) -> Any:
    from actors.client import job_spec
    from transport import protocol as wire

    allowed = {
        "task",
        "args",
        "kwargs",
        "priority",
        "queue",
        "depends_on",
        "max_retries",
        "idempotency_key",
        "timeout",
        "backoff",
    }
    unknown = set(fields) - allowed
    if unknown:
        names = ", ".join(sorted(unknown))
        fail(f"{where}: unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}")
    if not isinstance(fields.get("task"), str):
        fail(f"{where}: 'task' (a string) is required")
    if not isinstance(fields.get("args", []), list):
        fail(f"{where}: 'args' must be a JSON array")
    if not isinstance(fields.get("kwargs", {}), dict):
        fail(f"{where}: 'kwargs' must be a JSON object")
    options = {k: v for k, v in fields.items() if k not in ("task", "args", "kwargs")}
    backoff = options.get("backoff")
    if isinstance(backoff, dict):
        try:
            options["backoff"] = msgspec.convert(backoff, wire.Backoff)
        except msgspec.ValidationError as exc:
            fail(f"{where}: backoff: {exc} (expected {{'base': S, 'factor': F, 'cap': S}})")
    elif backoff is not None and not isinstance(backoff, list | tuple):
        fail(f"{where}: backoff must be [base, factor, cap] or {{'base', 'factor', 'cap'}}")
    try:
        spec = job_spec(fields["task"], fields.get("args", []), fields.get("kwargs"), **options)
        # Run the protocol's own validation now, for a local, precise message.
        msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=type(spec))
    except (TypeError, msgspec.ValidationError) as exc:
        fail(f"{where}: {exc}")
    return spec


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def _workflow_from_text(text: str, path: str) -> Any | None:
    """A workflow file is one JSON object with a "steps" list; anything else is JSON lines."""
    from transport import protocol as wire

    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict) or "steps" not in document:
        return None
    unknown = set(document) - {"name", "idempotency_key", "steps"}
    if unknown:
        fail(
            f"{path}: unknown workflow field(s) {', '.join(sorted(unknown))}; "
            "allowed: name, idempotency_key, steps"
        )
    if not isinstance(document["steps"], list) or not document["steps"]:
        fail(f"{path}: 'steps' must be a non-empty list of step objects")
    steps = []
    for number, fields in enumerate(document["steps"], 1):
        where = f"{path}: step #{number}"
        if not isinstance(fields, dict) or not isinstance(fields.get("name"), str):
            fail(f"{where}: each step is an object with a 'name' (a string)")
        fields = dict(fields)
        name, after = fields.pop("name"), fields.pop("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            fail(f"{where} ({name}): 'after' must be a list of step names")
        steps.append(wire.StepSpec(name, _spec_from_fields(fields, f"{where} ({name})"), after))
    return document.get("name", ""), document.get("idempotency_key"), steps


def _specs_from_args(args: argparse.Namespace) -> list[Any]:
    if args.file is not None:
        if args.task is not None:
            fail("give either TASK or --file, not both")
        lines = _read_file(args.file).splitlines()
        specs = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                line_fields = json.loads(line)
            except json.JSONDecodeError as exc:
                fail(f"{args.file}:{number}: not valid JSON: {exc.msg}")
            if not isinstance(line_fields, dict):
                fail(f"{args.file}:{number}: each line must be a JSON object")
            specs.append(_spec_from_fields(line_fields, f"{args.file}:{number}"))
        if not specs:
            fail(f"{args.file} holds no jobs")
        return specs
    if args.task is None:
        fail("name a TASK to run, or pass --file FILE")
    fields: dict[str, Any] = {"task": args.task}
    if args.args_json is not None:
        try:
            value = json.loads(args.args_json)
        except json.JSONDecodeError as exc:
            fail(f"ARGS_JSON is not valid JSON: {exc.msg} (example: '[1, 2]' or '{{\"x\": 1}}')")
        if isinstance(value, list):
            fields["args"] = value
        elif isinstance(value, dict):
            fields["kwargs"] = value
        else:
            fail("ARGS_JSON must be a JSON array (positional args) or object (keyword args)")
    for name in ("priority", "queue", "max_retries", "idempotency_key", "timeout", "backoff"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.depends_on:
        fields["depends_on"] = args.depends_on
    return [_spec_from_fields(fields, "job")]


def cmd_submit(args: argparse.Namespace) -> None:
    from actors.client import AsyncClient
    from transport import protocol as wire

    workflow = None
    if args.file is not None and args.task is None:
        workflow = _workflow_from_text(_read_file(args.file), args.file)
    specs = [] if workflow is not None else _specs_from_args(args)

    async def go() -> int:
        async with AsyncClient(args.connect) as client:
            labels: dict[int, str] = {}
            if workflow is not None:
                name, key, steps = workflow
                workflow_id, step_ids = await client.submit_workflow(steps, name, key)
                print(f"workflow {workflow_id}")
                ids = list(step_ids.values())
                labels = {job_id: f"{step} " for step, job_id in step_ids.items()}
            else:
                ids = await client.submit_many(specs)
            if not args.wait:
                for job_id in ids:
                    print(f"{labels.get(job_id, '')}{job_id}")
                return 0
            outcomes = await client.wait(ids, args.wait_timeout)
            failed = 0
            for job_id in ids:
                print(labels.get(job_id, ""), end="")
                outcome = outcomes[job_id]
                if outcome.status == "SUCCEEDED":
                    print(
                        job_id, outcome.status, json.dumps(wire.unpack(outcome.result), default=str)
                    )
                else:
                    failed += 1
                    print(job_id, outcome.status)
                    print(f"job {job_id} ended {outcome.status}: {outcome.error}", file=sys.stderr)
            return EXIT_FAILED if failed else 0

    raise SystemExit(run_async(go()))
