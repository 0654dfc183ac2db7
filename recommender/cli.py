"""`recommend`: rank GPU x model x quantization x engine x batch size by the paper's EOR/TWEOR.

Example: `recommend --gpu rtx4060ti --priority energy`. Bad names or impossible constraints print
one line `error: ...` on stderr and exit 2; click rejects malformed or non-positive numbers (exit 2).
"""

from __future__ import annotations

import sys

import click

from recommender import __version__
from recommender.errors import UserError

POS_FLOAT = click.FloatRange(min=0, min_open=True)
POS_INT = click.IntRange(min=1)


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable options also accept comma-separated lists: --quant fp16,bnb-int8."""
    return tuple(v.strip() for s in values for v in s.split(",") if v.strip())


EPILOG = """\b
Example: recommend --gpu rtx4060ti --priority energy
EOR = score / Wh and TWEOR = score / (Wh x s) as in the paper (section 3.3): score = mean of the
paper's tasks available for the model (percent, 0-100) plus the predicted change from quantization;
Wh and s = energy (x PUE) and time of the workload: --requests requests of --prompt-tokens in and
--output-tokens out (default 1000 x 256+128: a project choice, the paper states no lengths), run in
static batches of the candidate's batch size. Bad names exit 2 with one line on stderr."""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
               epilog=EPILOG)
@click.option("--gpu", "gpus", multiple=True, metavar="NAME",
              help="GPU id, alias or marketing name (repeatable). Default: the whole catalogue "
                   "(the profile's segments when --profile is given).")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model id/alias/HF id (repeatable); 'all' = whole catalogue. Default: the paper's six models.")
@click.option("--quant", "quants", multiple=True, metavar="NAME", help="Quantization method (repeatable). Default: all.")
@click.option("--engine", "engines", multiple=True, metavar="NAME", help="Inference engine (repeatable). Default: all.")
@click.option("--batch-size", "batch_sizes", multiple=True, type=POS_INT, help="Batch size (repeatable). Default: 1 8 32 64.")
@click.option("--prompt-tokens", type=POS_INT, default=256, show_default=True, help="Prompt tokens per request.")
@click.option("--output-tokens", type=POS_INT, default=128, show_default=True, help="Output tokens per request.")
@click.option("--requests", type=POS_INT, default=1000, show_default=True,
              help="Workload size: requests whose energy (Wh) and time (s) enter EOR/TWEOR.")
@click.option("--profile", metavar="NAME",
              help="Deployment profile (datacenter, enterprise, edge): accuracy floor, latency ceiling, "
                   "memory headroom, PUE, default priority, GPU segments. Explicit flags override it.")
@click.option("--priority", type=click.Choice(["energy", "accuracy", "latency", "balanced"], case_sensitive=False),
              help="energy: EOR; accuracy: score; latency: latency_s; balanced: TWEOR. "
                   "Default: the profile's, else energy.")
@click.option("--min-accuracy", type=click.FloatRange(min=0, max=100, min_open=True),
              help="Minimum mean task score (percent, 0-100); replaces the profile's relative floor.")
@click.option("--max-latency-ms", type=POS_FLOAT, help="Maximum time of one request (ms).")
@click.option("--max-energy-wh", type=POS_FLOAT, help="Maximum energy of the whole workload (Wh).")
@click.option("--price-kwh", type=POS_FLOAT, help="Electricity price (USD per kWh) for usd_per_1m_tokens.")
@click.option("--grid-gco2-kwh", type=POS_FLOAT, help="Grid carbon intensity (gCO2e per kWh).")
@click.option("--region", metavar="NAME", help="Grid intensity from the bundled regions.csv (default: world average).")
@click.option("--pue", type=click.FloatRange(min=1.0), help="Power usage effectiveness (>= 1). Default: profile's, else 1.0.")
@click.option("--top", type=POS_INT, help="Rows to show. Default 10 (all with --all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"], case_sensitive=False), default="table",
              show_default=True)
@click.option("--explain", is_flag=True, help="Why the top choice wins, what binds, what was excluded.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), metavar="FILE.png",
              help="Save an accuracy-vs-energy scatter with the Pareto front (needs matplotlib).")
@click.option("--all", "show_all", is_flag=True, help="Show every ranked candidate and the excluded ones with reasons.")
@click.option("--min-evidence", type=click.Choice(["measured", "same_card", "other_cards", "other_engines", "none"]),
              default="none", show_default=True,
              help="Keep only candidates whose numbers rest on at least this evidence: measured (this exact cell), "
                   "same_card (method and engine measured on this card, at a batch no larger than measured there), "
                   "other_cards (measured on some card, batch no larger than measured), other_engines (the method "
                   "measured with some engine), none (every candidate).")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Cost-model artifact folder (default: the shipped one).")
@click.version_option(__version__, prog_name="recommend")
def cli(gpus, models, quants, engines, batch_sizes, prompt_tokens, output_tokens, requests, profile, priority,
        min_accuracy, max_latency_ms, max_energy_wh, price_kwh, grid_gco2_kwh, region, pue, top, fmt, explain,
        plot, show_all, min_evidence, model_dir):
    """Recommend energy-efficient LLM deployments (GPU x model x quantization x engine x batch size)."""
    from recommender import rank, render

    query = rank.Query(
        gpus=_split(gpus), models=_split(models), quants=_split(quants), engines=_split(engines),
        batch_sizes=tuple(batch_sizes), prompt_tokens=prompt_tokens, output_tokens=output_tokens,
        requests=requests, profile=profile, priority=priority.lower() if priority else None,
        min_accuracy=min_accuracy, max_latency_ms=max_latency_ms, max_energy_wh=max_energy_wh,
        price_kwh=price_kwh, grid_gco2_kwh=grid_gco2_kwh, region=region, pue=pue, model_dir=model_dir,
        min_evidence=min_evidence)
    res = rank.recommend(query, predict_excluded=show_all)
    shown = None if show_all and top is None else (top or 10)
    cands = render.rows(res, shown, show_all)
    lines = render.explanation(res) if explain else None
    fmt = fmt.lower()
    if fmt == "json":
        click.echo(render.to_json(res, cands, lines))
    elif fmt == "csv":
        click.echo(render.to_csv(cands), nl=False)
        for line in lines or ():
            click.echo(line, err=True)
    else:
        render.print_table(res, cands)
        for line in lines or ():
            click.echo(line)
    for warning in res.query.get("warnings", ()):
        click.echo(f"warning: {warning}", err=True)
    if len(res.order) == 0:
        click.echo(f"note: {rank.why_empty(res)}", err=True)
    if plot:
        render.plot(res, plot)
        click.echo(f"wrote {plot}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="recommend", standalone_mode=True)
    except UserError as exc:
        for warning in getattr(exc, "warnings", ()):
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
