"""The ``cutover`` command (also installed as ``kubectl-cutover``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cutover import api
from cutover.crd import crd_yaml

app = typer.Typer(
    help="Blue-green migrations with health gates.",
    no_args_is_help=True,
    add_completion=False,
)


def _load_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise typer.BadParameter(f"{path} is not valid YAML: {error}") from None
    return [d for d in documents if isinstance(d, dict) and d.get("kind") == api.KIND]


@app.command()
def crd() -> None:
    """Print the Migration CustomResourceDefinition."""
    typer.echo(crd_yaml(), nl=False)


@app.command()
def lint(
    file: Annotated[Path, typer.Option("-f", "--filename", help="Manifest file, or - for stdin.")],
) -> None:
    """Validate Migration manifests; exit 1 on any error."""
    migrations = _load_documents(file)
    if not migrations:
        typer.echo(f"{file}: no Migration found", err=True)
        raise typer.Exit(1)
    failed = False
    for document in migrations:
        name = document.get("metadata", {}).get("name", "<unnamed>")
        try:
            api.Migration.from_manifest(document)
        except api.SpecInvalid as error:
            failed = True
            for problem in error.problems:
                typer.echo(f"{file}: Migration {name}: {problem}")
        else:
            typer.echo(f"{file}: Migration {name}: valid")
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
