"""`llmkit train CONFIG [key=value ...]`: fine-tune from a YAML config, with a live progress bar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llmkit.cli.console import console, err_console
from llmkit.cli.model_loading import quiet_transformers


def show_config_keys(asked: bool) -> None:
    """`--help-config`: every training config key with its type, default and meaning, then exit."""
    if not asked:
        return
    from rich.table import Table

    from llmkit.train.config import config_reference

    table = Table(title="llmkit train config keys (YAML or key=value)")
    table.add_column("key", no_wrap=True)
    for name in ("type", "default", "what it does here", "LLaMA-Factory"):
        table.add_column(name)
    for row in config_reference():
        table.add_row(*row[:4], "same name" if row.llamafactory else "llmkit only")
    console.print(table)
    raise typer.Exit()


def train(
    config: Optional[Path] = typer.Argument(None, help="YAML training config (see examples/train/)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value settings that override the file."),
    help_config: bool = typer.Option(
        False, "--help-config", is_eager=True, callback=show_config_keys, help="List every config key and exit."
    ),
) -> None:
    """Fine-tune a model from a YAML config (LLaMA-Factory's keys): stage sft, pt (continued pre-training), rm
    (reward model), dpo (pref_loss sigmoid, hinge, ipo, orpo, simpo), kto, ppo or grpo, with lora, freeze or full
    training. Ctrl-C saves a checkpoint and stops. Config keys: --help-config."""
    from llmkit.train.config import load_config
    from llmkit.train.run import train as run_training

    settings = load_config(config, overrides or [])
    for note in settings.notes:
        err_console.print(f"[dim]note:[/] {note}")
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun / accelerate, only rank 0 reports
    quiet_transformers()
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, disable=not main_process) as progress:
        task = progress.add_task(f"{settings.stage} {settings.finetuning_type}", total=None, status="loading…")

        def report(record: dict) -> None:
            if "note" in record:
                progress.console.print(f"[dim]note:[/] {record['note']}")
            if "loss" in record:
                status = (f"loss {record['loss']:.4f} · lr {record.get('learning_rate', 0):.2e} · "
                          f"{record.get('tokens_per_second', 0):.0f} tok/s")
                progress.update(task, completed=record["step"], total=record["max_steps"], status=status)
            if "eval_loss" in record:
                progress.console.print(f"step {record['step']}: eval loss {record['eval_loss']:.4f}")

        result = run_training(settings, report)
    if not main_process:
        return
    for skipped in result.skipped[:20]:
        err_console.print(f"[yellow]skipped[/] {skipped}")
    if len(result.skipped) > 20:
        err_console.print(f"[yellow]… and {len(result.skipped) - 20} more skipped records[/]")
    state = "interrupted: checkpoint saved, resume with resume_from_checkpoint=true" if result.interrupted else "done"
    console.print(f"{state} after {result.global_step} steps · train loss {result.train_loss:.4f}"
                  + (f" · eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""))
    console.print(f"output: {result.output_dir} (chat with it: llmkit chat --model {result.output_dir})")
