"""The `lossdsl` command. Thin: every command calls the library and renders what it returns."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from lossdsl.diagnostics import Diagnostic
from lossdsl.output_files import OutputError, check_outputs, write_atomically
from lossdsl.passes import Checked, check_reference

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="lossdsl: check, compile and explain .loss specs; analyze, plot, tune and format them.",
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[str, typer.Argument(help="a .loss path or a standard-library name")]


def _exit_code(diagnostics: list[Diagnostic], strict: bool) -> int:
    if any(d.severity == "error" for d in diagnostics):
        return 2
    if strict and any(d.severity == "warning" for d in diagnostics):
        return 1
    return 0


def _render(checked: Checked, color: bool) -> str:
    lines = [d.render(checked.sources.get(d.span.file), color=color) for d in checked.diagnostics]
    return "\n".join(lines)


_COLUMNS = (
    ("differentiable", "differentiable"),
    ("continuous", "continuous"),
    ("bounds", "bounds"),
    ("convex", "convex"),
    ("gradient_bounded", "gradient bounded"),
)


def _properties(checked: Checked) -> dict[str, dict[str, str]]:
    return dict(checked.ir.properties) if checked.ok and checked.ir is not None else {}


def _property_table(properties: dict[str, dict[str, str]]) -> str:
    """Per term, what the analysis proved, as aligned plain text."""
    rows = [["term", *(title for _, title in _COLUMNS)]]
    rows += [
        [term, *(facts.get(key, "") for key, _ in _COLUMNS)] for term, facts in properties.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _allowed(allow: list[str]) -> list[str]:
    """The codes `--allow` names; a usage error (exit 2) for errors and unknown codes."""
    from lossdsl.codes import CODES
    from lossdsl.passes.suppress import parse_codes

    codes = sorted(set().union(*(parse_codes(entry) for entry in allow)))
    for entry in allow:
        if not parse_codes(entry) and entry.strip(", "):
            typer.echo(f"--allow takes codes such as W301, got {entry!r}", err=True)
            raise typer.Exit(2)
    for code in codes:
        if code not in CODES:
            typer.echo(f"--allow: no code {code}", err=True)
            raise typer.Exit(2)
        if code.startswith("E"):
            typer.echo(f"--allow: {code} is an error and cannot be silenced", err=True)
            raise typer.Exit(2)
    return codes


def _explain(code: str) -> None:
    from lossdsl.codes import CODES, explain

    text = explain(code)
    if text is None:
        typer.echo(f"no code {code!r}; the codes are: {', '.join(CODES)}", err=True)
        raise typer.Exit(2)
    typer.echo(text)
    raise typer.Exit(0)


@app.command()
def check(
    specs: Annotated[
        list[str] | None, typer.Argument(help="paths or standard-library names")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="human or json")] = "human",
    strict: Annotated[bool, typer.Option(help="exit 1 when there are warnings")] = False,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="silence a W/I code everywhere (repeatable, W301,W304)"),
    ] = None,
    explain_code: Annotated[
        str | None, typer.Option("--explain", help="print a code's documentation and exit")
    ] = None,
    sliced: Annotated[
        bool, typer.Option("--sliced", help="also check that it can run in slices (chunk=)")
    ] = False,
) -> None:
    """Check specs: syntax, names, shapes, dtypes, hazards, and per-term properties."""
    if explain_code is not None:
        _explain(explain_code)
    if not specs:
        typer.echo("give one or more specs to check (or --explain CODE)", err=True)
        raise typer.Exit(2)
    if format not in ("human", "json"):
        typer.echo(f"--format must be human or json, got {format!r}", err=True)
        raise typer.Exit(2)
    from lossdsl.passes.suppress import suppress

    silenced = _allowed(allow or [])
    reports = []
    every: list[Diagnostic] = []
    color = sys.stdout.isatty()
    for spec in specs:
        checked = check_reference(spec, sliced=sliced)
        if silenced:
            checked = replace(checked, diagnostics=suppress(checked.diagnostics, {}, silenced))
        every += checked.diagnostics
        properties = _properties(checked)
        if format == "json":
            reports.append(
                {
                    "file": checked.file if checked.ir or checked.sources else spec,
                    "diagnostics": [d.to_json() for d in checked.diagnostics],
                    "properties": properties,
                }
            )
            continue
        rendered = _render(checked, color)
        if rendered:
            typer.echo(rendered)
        if properties:
            typer.echo(_property_table(properties))
        errors = sum(d.severity == "error" for d in checked.diagnostics)
        warnings = sum(d.severity == "warning" for d in checked.diagnostics)
        status = "ok" if not errors else f"{errors} error{'s' * (errors != 1)}"
        if warnings:
            status += f", {warnings} warning{'s' * (warnings != 1)}"
        typer.echo(f"{checked.file if checked.sources else spec}: {status}")
    if format == "json":
        typer.echo(json.dumps(reports, indent=2))
    raise typer.Exit(_exit_code(every, strict))


def _checked_or_exit(spec: str) -> Checked:
    """The checked spec, for the commands that go on to torch (so torch is imported quietly)."""
    checked = check_reference(spec)
    if not checked.ok:
        typer.echo(_render(checked, sys.stderr.isatty()), err=True)
        raise typer.Exit(2)
    from lossdsl.quiet_torch import import_torch

    import_torch()
    return checked


def _ir_or_exit(spec: str) -> object:
    return _checked_or_exit(spec).ir


@app.command()
def compile(
    spec: SpecArg,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="a standalone .py to write")
    ] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="a torch.export .pt2 to write")
    ] = None,
    dtype: Annotated[str, typer.Option(help="compute dtype of the .pt2: f32 or f64")] = "f32",
    leading_rank: Annotated[int, typer.Option(help="rank of `...` in the .pt2")] = 1,
) -> None:
    """Write a standalone Python module (needs only torch) and/or a torch.export program."""
    if output is None and export is None:
        typer.echo("give -o OUT.py, --export OUT.pt2, or both", err=True)
        raise typer.Exit(2)
    if dtype not in ("f32", "f64"):
        typer.echo(f"--dtype must be f32 or f64, got {dtype!r}", err=True)
        raise typer.Exit(2)
    if leading_rank < 0:
        typer.echo(f"--leading-rank must be 0 or more, got {leading_rank}", err=True)
        raise typer.Exit(2)
    checked = _checked_or_exit(spec)
    outputs = [(option, path) for option, path in (("-o", output), ("--export", export)) if path]
    try:
        check_outputs(outputs, [file.path for file in checked.files])
    except OutputError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    ir = checked.ir
    if output is not None:
        from lossdsl.backend.standalone import standalone_source

        source = standalone_source(ir)  # type: ignore[arg-type]
        _write(output, lambda path: path.write_text(source, encoding="utf-8"))
    if export is not None:
        from lossdsl.backend.export import export_program

        def write_program(path: Path) -> None:
            from lossdsl.tools.progress import progress

            with progress(f"exporting {checked.ir.name} with torch.export"):  # type: ignore[union-attr]
                export_program(ir, path, dtype=dtype, leading_rank=leading_rank)  # type: ignore[arg-type]

        _write(export, write_program)


def _write(target: Path, write: Callable[[Path], None]) -> None:
    try:
        write_atomically(target, write)
    except OSError as error:
        typer.echo(f"cannot write {target}: {error.strerror or error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {target}")


@app.command()
def explain(spec: SpecArg) -> None:
    """Show a spec's IR and the generated torch.fx code."""
    ir = _ir_or_exit(spec)
    from lossdsl.backend.explain import explain_text

    text = explain_text(ir)  # type: ignore[arg-type]
    if sys.stdout.isatty():
        try:
            from lossdsl.tools.highlight import highlight_explain

            text = highlight_explain(text)
        except ImportError:  # Pygments comes with rich (typer) and the lsp extra
            pass
    typer.echo(text)


@app.command(name="list")
def list_specs() -> None:
    """List the standard library."""
    from lossdsl.resources import standard_name, stdlib_index
    from lossdsl.spec_files import Reference, SpecFileError, read_spec_file
    from lossdsl.syntax.parser import parse_collecting

    for path in stdlib_index().values():
        name = standard_name(path)
        try:
            text = read_spec_file(path, Reference(name, path.parent)).text
        except SpecFileError as error:  # a broken installation: say so, list the others
            typer.echo(f"{name:<32} (unreadable: {error})")
            continue
        spec, _ = parse_collecting(text, str(path))
        summary = (spec.doc or "").strip().splitlines()[0] if spec and spec.doc else ""
        typer.echo(f"{name:<32} {summary}")


# ---- the workbench (lossdsl/tools) -------------------------------------------------------


def _tool_error(error: Exception) -> typer.Exit:
    typer.echo(str(error), err=True)
    return typer.Exit(2)


@app.command()
def fmt(
    paths: Annotated[
        list[Path], typer.Argument(help=".loss files or folders of them; - reads stdin")
    ],
    check: Annotated[
        bool, typer.Option("--check", help="change nothing; exit 1 if a file would change")
    ] = False,
) -> None:
    """Format specs in place: the canonical layout, comments kept, the meaning unchanged."""
    from lossdsl.tools.fmt import format_files, format_stdin

    if [str(p) for p in paths] == ["-"]:
        raise typer.Exit(format_stdin(check))
    results = format_files(paths, write=not check)
    for result in results:
        if result.error is not None:
            typer.echo(result.error, err=True)
        elif result.changed:
            typer.echo(f"{'would reformat' if check else 'reformatted'} {result.path}")
    if any(r.error is not None for r in results) or not results:
        if not results:
            typer.echo("no .loss files found", err=True)
        raise typer.Exit(2)
    raise typer.Exit(1 if check and any(r.changed for r in results) else 0)


@app.command()
def analyze(
    spec: SpecArg,
    dims: Annotated[
        str | None, typer.Option(help="dim sizes of the synthetic inputs, e.g. B=8,T=64,V=1000")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the synthetic inputs")] = 0,
    step: Annotated[float, typer.Option(help="the training step")] = 0,
    inputs: Annotated[
        Path | None, typer.Option(help="a saved batch (torch.save of a dict) instead")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Term values, weights, shares and gradient norms; the first non-finite node."""
    checked = _checked_or_exit(spec)
    from lossdsl.runtime.core import InputError
    from lossdsl.tools import ToolError
    from lossdsl.tools.analyze import analyze as analyze_spec
    from lossdsl.tools.analyze import load_inputs, parse_dims

    try:
        batch = load_inputs(inputs) if inputs is not None else None
        report = analyze_spec(checked.ir, batch, parse_dims(dims), seed, step)  # type: ignore[arg-type]
    except (ToolError, InputError) as error:
        raise _tool_error(error) from None
    typer.echo(json.dumps(report.to_json(), indent=2) if as_json else report.render())


@app.command()
def graph(
    spec: SpecArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="a .svg or .dot to write")],
    renderer: Annotated[
        str, typer.Option(help="for .svg: auto (Graphviz when installed), dot or builtin")
    ] = "auto",
) -> None:
    """Draw the IR: the spec's names, inputs/params/terms/metrics apart, hazards in red."""
    from lossdsl.tools import ToolError
    from lossdsl.tools.graph import write_graph

    checked = check_reference(spec)
    if not checked.ok:
        typer.echo(_render(checked, sys.stderr.isatty()), err=True)
        raise typer.Exit(2)
    inputs = [file.path for file in checked.files]
    try:
        write_graph(checked.ir, checked.diagnostics, output, renderer, inputs)  # type: ignore[arg-type]
    except ToolError as error:
        raise _tool_error(error) from None
    typer.echo(f"wrote {output}")


IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


@app.command()
def plot(
    spec: SpecArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="a .png, .svg or .pdf to draw")],
    steps: Annotated[str, typer.Option(help="the steps to cover, START:STOP")] = "0:10000",
    points: Annotated[int, typer.Option(help="evenly spaced steps to evaluate")] = 501,
) -> None:
    """Draw every param that follows `step` and every term weight over the steps."""
    from lossdsl.tools import ToolError
    from lossdsl.tools.outputs import check_output
    from lossdsl.tools.plot import parse_steps, plot_schedules

    checked = check_reference(spec)
    if not checked.ok:
        typer.echo(_render(checked, sys.stderr.isatty()), err=True)
        raise typer.Exit(2)
    try:
        start, stop = parse_steps(steps)
        check_output(output, IMAGE_SUFFIXES, [file.path for file in checked.files])
        plot_schedules(checked.ir, start, stop, output, points)  # type: ignore[arg-type]
    except ToolError as error:
        raise _tool_error(error) from None
    typer.echo(f"wrote {output}")


@app.command()
def landscape(
    spec: SpecArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="a .png, .svg or .pdf to draw")],
    dims: Annotated[
        str | None, typer.Option(help="dim sizes of the synthetic inputs, e.g. B=8,T=64,V=1000")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the inputs and the directions")] = 0,
    step: Annotated[float, typer.Option(help="the training step")] = 0,
    inputs: Annotated[
        Path | None, typer.Option(help="a saved batch (torch.save of a dict) instead")
    ] = None,
    span: Annotated[float, typer.Option(help="how far to go along each direction")] = 1.0,
    points: Annotated[int, typer.Option(help="positions along the 1-D direction")] = 21,
    grid: Annotated[int, typer.Option(help="positions per axis of the 2-D grid (0: none)")] = 11,
    as_json: Annotated[bool, typer.Option("--json", help="also print the values as JSON")] = False,
) -> None:
    """Draw the loss along random filter-normalised directions around the grad inputs."""
    checked = _checked_or_exit(spec)
    from lossdsl.runtime.core import InputError
    from lossdsl.tools import ToolError
    from lossdsl.tools.analyze import load_inputs, parse_dims
    from lossdsl.tools.landscape import landscape as landscape_of
    from lossdsl.tools.landscape import plot_landscape
    from lossdsl.tools.outputs import check_output

    ir = checked.ir
    try:
        check_output(output, IMAGE_SUFFIXES, [file.path for file in checked.files])
        batch = load_inputs(inputs) if inputs is not None else None
        found = landscape_of(ir, batch, parse_dims(dims), seed, step, span, points, grid)  # type: ignore[arg-type]
        plot_landscape(ir, found, output)  # type: ignore[arg-type]
    except (ToolError, InputError) as error:
        raise _tool_error(error) from None
    if as_json:
        values = {"a": found.alphas, "total": found.total, "terms": found.terms}
        values |= {"grid": found.grid, "surface": found.surface}
        typer.echo(json.dumps(values))
    typer.echo(f"wrote {output}", err=as_json)


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="the new spec's name (its `loss` line)")],
    source: Annotated[
        str | None, typer.Option("--from", help="a spec to start from: ppo, rl/grpo, a path")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="the file to write (NAME.loss)")
    ] = None,
) -> None:
    """Start a new spec: a standard one under a new name, or a small template."""
    from lossdsl.tools import ToolError
    from lossdsl.tools.new import new_spec
    from lossdsl.tools.outputs import check_output, write_text_output

    target = output or Path(f"{name}.loss")
    try:
        text = new_spec(name, source)
        check_output(target, (".loss",), replace=False)
        write_text_output(target, text)
    except ToolError as error:
        raise _tool_error(error) from None
    typer.echo(f"wrote {target}" + (f" (from {source})" if source else ""))


@app.command()
def tune(
    spec: SpecArg,
    objective: Annotated[
        str, typer.Option(help="module:function (or file.py:function) scoring a loaded loss")
    ],
    trials: Annotated[int, typer.Option(help="how many trials")] = 30,
    sampler: Annotated[str, typer.Option(help="tpe or grid")] = "tpe",
    study: Annotated[
        Path | None, typer.Option(help="the Optuna journal file to write (NAME.study.log)")
    ] = None,
    seed: Annotated[int, typer.Option(help="the sampler's seed")] = 0,
    direction: Annotated[str, typer.Option(help="minimize or maximize the objective")] = (
        "minimize"
    ),
) -> None:
    """Search the params' declared ranges with Optuna for the best objective."""
    checked = _checked_or_exit(spec)
    from lossdsl.tools import ToolError
    from lossdsl.tools.outputs import check_output
    from lossdsl.tools.tune import load_objective
    from lossdsl.tools.tune import tune as tune_spec

    path = study or Path(f"{checked.ir.name}.study.log")  # type: ignore[union-attr]
    try:
        check_output(path, (path.suffix,), [file.path for file in checked.files])
        result = tune_spec(spec, load_objective(objective), trials, sampler, path, seed, direction)
    except ToolError as error:
        raise _tool_error(error) from None
    shown = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:.6g}"
        for k, v in sorted(result.best_params.items())
    )
    typer.echo(f"best: {shown}")
    typer.echo(
        f"objective {result.best_value:.6g} at trial {result.best_trial} of {result.trials}; "
        f"study in {path}"
    )


@app.command()
def lsp() -> None:
    """Run the language server on stdin/stdout (diagnostics, quick fixes, hover, definitions)."""
    from lossdsl.tools import ToolError
    from lossdsl.tools.lsp import serve

    try:
        serve()
    except ToolError as error:
        raise _tool_error(error) from None


def main() -> None:
    app()
