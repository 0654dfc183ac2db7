"""`measure`: benchmark collection (run one cell, run a resumable grid, meter a command, doctor)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from recommender.errors import UserError

_METERS = click.Choice(["auto", "nvidia", "fake"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Measure GPU energy, latency, throughput, memory and accuracy of LLM inference."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--meter", "meter_kind", type=_METERS, default="auto", show_default=True)
@click.option("--detect-s", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds spent detecting the energy counter's update period.")
def doctor(as_json: bool, meter_kind: str, detect_s: float) -> None:
    """What this machine can measure, and why not."""
    from measure.doctor import doctor_main

    sys.exit(doctor_main(json=as_json, meter_kind=meter_kind, detect_s=detect_s))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--json", "as_json", is_flag=True)
@click.option("--meter", "meter_kind", type=_METERS, default="auto", show_default=True)
@click.option("--hz", "sample_hz", type=click.FloatRange(min=0.1, max=1000), default=10.0, show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def meter(as_json: bool, meter_kind: str, sample_hz: float, command: tuple[str, ...]) -> None:
    """Energy, time and average power of any command: `measure meter -- CMD ARGS`."""
    from measure.metercmd import meter_main

    sys.exit(meter_main(list(command), meter_kind=meter_kind, json=as_json, sample_hz=sample_hz))


def _runner(device: str, meter_kind: str, grid_file: str | None, isolation: str):
    from measure.meter.factory import get_meters
    from measure.runner import CellRunner, RunContext

    meter_obj = None
    if device.startswith("cuda") or meter_kind == "fake":
        index = int(device.split(":")[1]) if ":" in device else 0
        kind = meter_kind if meter_kind != "auto" or device.startswith("cuda") else "fake"
        if kind != "fake":
            from measure.meter.nvidia import nvml_index_for_cuda

            index = nvml_index_for_cuda(index)
        meter_obj = get_meters(kind, [index] if kind != "fake" else None)[0]
    ctx = RunContext(command=shlex.join(["measure", *sys.argv[1:]]), grid_file=grid_file, isolation=isolation)
    return CellRunner(meter_obj, device=device, context=ctx), meter_obj


@cli.command()
@click.option("--model", required=True, help="Catalogue id, local path or Hugging Face id.")
@click.option("--quant", default="bf16", show_default=True)
@click.option("--engine", default="hf-eager", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--output-tokens", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--repetitions", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--weights", type=click.Choice(["random", "real"]), default="random", show_default=True)
@click.option("--task", "tasks", multiple=True, help="lm-eval task (repeatable); needs --weights real.")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None)
@click.option("--device", default="cuda:0", show_default=True, help="cuda:N or cpu.")
@click.option("--meter", "meter_kind", type=_METERS, default="auto", show_default=True)
@click.option("--isolation", type=click.Choice(["flag", "refuse"]), default="flag", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Append the record to this JSONL store.")
def run(model, quant, engine, batch_size, prompt_tokens, output_tokens, repetitions, warmup, weights, tasks,
        eval_limit, device, meter_kind, isolation, out) -> None:
    """Measure one cell and print its record as JSON."""
    from measure.grid import validate_cell_args

    cell = validate_cell_args(model, quant, engine, batch_size, prompt_tokens, output_tokens,
                              repetitions=repetitions, warmup=warmup, weights=weights, tasks=tasks,
                              eval_limit=eval_limit,
                              labels={"model": "--model", "quant": "--quant", "engine": "--engine",
                                      "batch_size": "--batch-size", "prompt_tokens": "--prompt-tokens",
                                      "output_tokens": "--output-tokens"})
    runner, _ = _runner(device, meter_kind, None, isolation)
    try:
        rec = runner.run(cell)
    finally:
        runner.close()
    if out:
        from measure.store import Store

        with Store(out) as store:
            store.append(rec)
    click.echo(rec.to_json())
    sys.exit(0 if rec.status == "ok" else 1)


def _pending_in(spec, cells, records, retry_failed: bool, gpu_uuids: tuple[str, ...] = ()) -> int:
    """Cells of `spec` (`cells`: its expansion) that the store's `records` hold no finished record of, whatever
    the GPU (a store holds one card's records): what a run would still measure (`measure grid --dry-run`
    reports it as `pending_in_out`). With `resume_per: gpu` a cell is pending for each GPU of `gpu_uuids`
    that has not recorded it (the sum over those GPUs; without UUIDs, for one GPU that has recorded nothing)."""
    from measure.store import done_keys

    hashes = {c.content_hash for c in cells}
    if spec.resume_per == "gpu":
        return sum(len(hashes - {h for h, _ in done_keys([r for r in records if r.gpu_uuid == u], retry_failed)})
                   for u in gpu_uuids) if gpu_uuids else len(hashes)
    return len(hashes - {h for h, _ in done_keys(records, retry_failed)})


@cli.command()
@click.argument("grid_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Append-only JSONL store.")
@click.option("--set", "overrides", multiple=True, help="Override a grid key, e.g. --set repetitions=5.")
@click.option("--device", default="cuda:0", show_default=True)
@click.option("--meter", "meter_kind", type=_METERS, default="auto", show_default=True)
@click.option("--isolation", type=click.Choice(["flag", "refuse"]), default="flag", show_default=True)
@click.option("--retry-failed", is_flag=True, help="Run again cells recorded as failed.")
@click.option("--stop-after", type=click.IntRange(min=1), default=None, help="Run at most N cells.")
@click.option("--time-budget-s", type=click.FloatRange(min=1), default=None,
              help="Do not start a cell that would end after this many seconds.")
@click.option("--dry-run", is_flag=True,
              help="Validate and count the cells, run nothing; with an existing --out, also the cells still pending "
                   "there (`pending_in_out`) and the least --time-budget-s that would start one of them "
                   "(`first_cell_budget_s`, from the store's records).")
@click.option("--gpu-uuid", "gpu_uuids", multiple=True,
              help="With --dry-run and a grid of `resume_per: gpu`: count the cells pending for these GPUs "
                   "(NVML UUIDs, as `nvidia-smi --query-gpu=uuid` prints them; repeat the flag).")
@click.option("--ray", "use_ray", is_flag=True, help="Spread the cells over a Ray cluster's GPUs.")
@click.option("--address", default=None, help="Ray cluster address (default: start a local one).")
@click.option("--claim-dir", type=click.Path(file_okay=False), default=None,
              help="Share the grid with other `measure grid` processes using the same directory (e.g. one per "
                   "GPU: --device cuda:N, own --out each; join the stores with `measure merge`).")
@click.option("--claim-owner", default=None,
              help="Who owns this process's claims (default: host name and --device), so a restarted worker "
                   "finishes the blocks it took.")
@click.option("--no-progress", is_flag=True)
def grid(grid_file, out, overrides, device, meter_kind, isolation, retry_failed, stop_after, time_budget_s,
         dry_run, gpu_uuids, use_ray, address, claim_dir, claim_owner, no_progress) -> None:
    """Run a resumable grid (models x quants x engines x batches x workloads x tasks)."""
    import json

    from measure.grid import expansion_report, load_grid

    spec = load_grid(grid_file, list(overrides))
    if dry_run:
        report = expansion_report(spec)
        if Path(out).exists():
            from measure.grid import expand
            from measure.store import Store

            cells, records = expand(spec), list(Store(out).iter_records())  # read once for both figures
            report["pending_in_out"] = _pending_in(spec, cells, records, retry_failed, tuple(gpu_uuids))
            if spec.resume_per != "gpu":  # per-GPU grids (the anchors) are a minute a cell: no estimate needed
                from measure.executor import first_cell_budget_s

                first = first_cell_budget_s(cells, records, retry_failed)
                report["first_cell_budget_s"] = None if first is None else round(first, 1)
        click.echo(json.dumps(report, indent=2, default=str))
        return
    if use_ray:
        from measure.distributed import run_grid_ray

        summary = run_grid_ray(spec, out, address=address, retry_failed=retry_failed)
        click.echo(summary.line() if hasattr(summary, "line") else str(summary))
        return
    from measure.executor import run_grid
    from measure.store import Store

    runner, meter_obj = _runner(device, meter_kind, str(Path(grid_file)), isolation)
    device_name = meter_obj.name if meter_obj is not None else "cpu"
    with Store(out) as store:
        runner.remember(r for r in store.iter_records() if r.gpu_name == device_name)
        summary = run_grid(spec, runner, store, device_name=device_name, meter=meter_obj,
                           progress=not no_progress, retry_failed=retry_failed, stop_after=stop_after,
                           time_budget_s=time_budget_s, claims=_claims(claim_dir, claim_owner, device),
                           device_uuid=getattr(meter_obj, "uuid", None))
    click.echo(summary.line())


@cli.command("record-failed")
@click.argument("grid_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Append-only JSONL store.")
@click.option("--set", "overrides", multiple=True, help="Override a grid key, e.g. --set 'batch_sizes=[32]'.")
@click.option("--gpu-name", required=True,
              help="The GPU name as NVML reports it (the store's resume key), e.g. 'NVIDIA H200'.")
@click.option("--reason", required=True,
              help="What was observed, with its provenance (calls, times), e.g. 'ran past 560 s twice (s21-c, s22-b)'.")
@click.option("--max-cells", type=click.IntRange(min=1), default=1, show_default=True,
              help="Refuse when the selection leaves more cells pending than this.")
@click.option("--gpu-uuid", default=None,
              help="The GPU's NVML UUID (as `nvidia-smi --query-gpu=uuid` prints it): required for a grid of "
                   "`resume_per: gpu`, whose cells are pending per GPU; recorded in the failed record either way.")
def record_failed(grid_file, out, overrides, gpu_name, reason, max_cells, gpu_uuid) -> None:
    """Record the pending cells of a grid selection as failed, with the reason, for cells that were run and never
    finished (e.g. killed at a device call's time limit, which leaves no record): the store then says why the cell
    has no measurement, and `measure grid` passes over it unless `--retry-failed`. Refuses a selection with more than
    --max-cells pending cells, so that a cell is never marked failed by a too-wide selection. For a grid of
    `resume_per: gpu` (the machine anchors) the cells are pending per GPU, as `measure grid` decides them: --gpu-uuid
    names the GPU, and the record carries it."""
    import shlex

    from measure.executor import failed_record, finish_record, pending_cells, resolve_gpu_id
    from measure.grid import expand, load_grid
    from measure.store import Store, done_keys

    spec = load_grid(grid_file, list(overrides))
    if not reason.strip():
        raise click.ClickException("--reason is empty; say what was observed and where (calls, times)")
    if spec.resume_per == "gpu" and not gpu_uuid:
        raise click.ClickException(f"{grid_file} has resume_per: gpu (each GPU measures every cell): name the GPU "
                                   "with --gpu-uuid (nvidia-smi --query-gpu=uuid --format=csv)")
    store = Store(out)
    # what `measure grid` would run next on this GPU: the same resume keys and pending rule (per GPU UUID for a
    # grid of `resume_per: gpu`)
    records = list(store.iter_records()) if Path(out).exists() else []
    if spec.resume_per == "gpu":
        records = [r for r in records if r.gpu_uuid == gpu_uuid]
    pending, _ = pending_cells(expand(spec), done_keys(records, False), gpu_name)
    if not pending:
        raise click.ClickException(f"no cell of this selection is pending in {out} for {gpu_name!r}; nothing recorded")
    if len(pending) > max_cells:
        labels = ", ".join(c.label() for c in pending[:5])
        raise click.ClickException(f"{len(pending)} cells pending ({labels}{', ...' if len(pending) > 5 else ''}), "
                                   f"more than --max-cells {max_cells}: narrow the selection with --set")
    # the command as parsed (not sys.argv: the same under any caller), so that it can be run again as written
    command = shlex.join(["measure", "record-failed", str(grid_file), "--out", str(out),
                          *(a for o in overrides for a in ("--set", o)), "--gpu-name", gpu_name,
                          *(("--gpu-uuid", gpu_uuid) if gpu_uuid else ()),
                          "--reason", reason.strip(), "--max-cells", str(max_cells)])
    with store:
        for cell in pending:
            rec = failed_record(cell, reason.strip(), command=command)
            rec.gpu_id = rec.gpu_id or resolve_gpu_id(gpu_name)
            rec.gpu_uuid = gpu_uuid or rec.gpu_uuid
            finish_record(rec, device_name=gpu_name, cooldown_s=None, grid_file=str(Path(grid_file)))
            store.append(rec)
            click.echo(f"{cell.label()}: recorded failed ({gpu_name})")


def _claims(claim_dir: str | None, owner: str | None, device: str):
    if not claim_dir:
        return None
    import socket

    from measure.executor import ClaimDir

    return ClaimDir(claim_dir, owner=owner or f"{socket.gethostname()}:{device}")


@cli.command()
@click.argument("target", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, type=click.Path(exists=True, dir_okay=False), required=True)
def merge(target, sources) -> None:
    """Append to TARGET the records of SOURCES it does not hold yet (same `record_id`).

    Every source is validated first; one invalid record rejects the whole merge (nothing written)."""
    from measure.record import SchemaError
    from measure.store import merge_stores

    try:
        added = merge_stores(target, sources)
    except SchemaError as exc:
        raise click.ClickException(f"{exc}; nothing was merged") from None
    click.echo(f"{target}: {added} record(s) added")


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False), required=True)
def validate(files) -> None:
    """Check JSONL record files against the schema (all-or-nothing per file)."""
    from measure.record import Record, SchemaError
    from measure.store import Store

    bad = 0
    for f in files:
        errors = []
        n = 0
        for i, d in enumerate(Store(f).iter_dicts(), start=1):
            n += 1
            try:
                Record.from_dict(d)
            except (SchemaError, TypeError) as exc:
                errors.append(f"{f}:{i}: {exc}")
        bad += bool(errors)
        click.echo(f"{f}: {n} records, {len(errors)} invalid")
        for e in errors[:20]:
            click.echo("  " + e)
    sys.exit(1 if bad else 0)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
