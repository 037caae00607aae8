"""Printing results: a changeset for people, one JSON document for machines."""

from __future__ import annotations

import json
import sys
import time

import click

from .changes import summary


class Progress:
    """Progress lines on stderr with the elapsed time, so stdout stays clean for JSON."""

    def __init__(self, quiet: bool = False) -> None:
        self.start = time.monotonic()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.monotonic() - self.start:6.1f}s] {message}", err=True)


def print_changes(result, title: str = "") -> None:
    title = title or {"install": "Plan", "plan": "Plan", "status": "Status",
                      "uninstall": "Plan" if result.dry_run else "Changes"
                      }.get(result.command, "Changes")
    where = f"release {result.release} in namespace {result.namespace}"
    if result.project:
        where += f", project {result.project}"
    click.echo(f"{title} for {where}:")
    if result.recorded and (result.command == "plan" or result.dry_run):
        click.echo(f"  settings (install record): {' '.join(result.recorded)}")
    if result.settings:
        from .record import setting_lines

        click.echo("  settings (changed from the install record):")
        for line in setting_lines(result.settings):
            click.echo(f"    {line}")
    for change in result.changes:
        click.echo(f"  {change.line()}")
    counts = summary(result.changes)
    if result.changes:
        n = counts["create"] + counts["update"] + counts["delete"] + len(result.settings)
        click.echo(f"{counts['create']} to create, {counts['update']} to update, "
                   f"{counts['delete']} to delete, {counts['unchanged']} unchanged"
                   + ("." if n else ": nothing to do."))


STATE = {"create": "absent", "update": "drifted", "unchanged": "present", "delete": "present"}


def print_status(result) -> None:
    click.echo(f"Status of release {result.release} in namespace {result.namespace}"
               + (f", project {result.project}:" if result.project else ":"))
    for change in result.changes:
        state = STATE[change.action]
        detail = f"  ({change.detail})" if change.detail else ""
        click.echo(f"  {state:<8} {change.kind:<28} {change.name}{detail}")


def print_result(result, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=False))
        return
    if result.command == "render":
        # stdout is the manifests alone (for `> file` or a pipe); what else there is to say
        # goes to stderr.
        sys.stdout.write(result.manifests)
        for change in result.changes:
            detail = f"  ({change.detail})" if change.detail else ""
            click.echo(f"{change.action:<9} {change.kind} {change.name}{detail}", err=True)
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        return
    if result.command == "status":
        print_status(result)
    elif result.command == "install" and not result.dry_run:
        counts = summary(result.changes)
        click.echo(f"Applied: {counts['create']} created, {counts['update']} updated, "
                   f"{counts['unchanged']} unchanged.")
    elif result.command == "uninstall" and result.shown:
        # The list was printed as the plan just before; say how it went.
        counts = summary(result.changes)
        gone = f", {counts['unchanged']} already gone" if counts["unchanged"] else ""
        click.echo(f"Deleted: {counts['delete']}{gone}.")
        for change in result.changes:
            if change.action != "delete":
                click.echo(f"  {change.line()}")
    elif result.command not in ("test", "publish"):
        print_changes(result)
    if result.tests is not None:
        click.echo("Tests:")
        for check in result.tests["checks"]:
            mark = "ok  " if check["ok"] else "FAIL"
            reason = f": {check['reason']}" if check["reason"] else ""
            click.echo(f"  {mark} {check['check']}{reason}")
        click.echo("  passed" if result.tests["passed"] else "  FAILED")
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.next_steps:
        click.echo("Reach MLflow:")
        for line in result.next_steps:
            click.echo(f"  {line}")
    if result.command == "install" and not result.dry_run:
        click.echo(f"Done in {result.elapsed:.1f}s.")


def print_interrupted(exc, output: str, command: str) -> None:
    """What a signal left: applied, stopped half way, not started; how to resume."""
    result = exc.result
    report = result.interrupted if result is not None else None
    if output == "json":
        doc = result.to_json() if result is not None else {"schemaVersion": 1}
        doc.setdefault("interrupted", {"signal": exc.name})
        doc["exitCode"] = exc.exit_code
        click.echo(json.dumps(doc, indent=2))
    if report is None:
        click.echo(f"Interrupted by {exc.name}: nothing was changed. Run the same command "
                   "again to start over.", err=True)
        return
    click.echo(f"Interrupted by {exc.name}: stopped before the next change and cleaned up "
               "(lock released; no temporary database user or child process left).", err=True)
    for key, title in (("applied", "Applied before the signal"),
                       ("stopped", "Stopped half way (the re-run finishes it; a Cloud SQL "
                                   "operation already started completes on the instance)"),
                       ("notStarted", "Not started")):
        if report[key]:
            click.echo(f"{title}:", err=True)
            for change in report[key]:
                click.echo(f"  {change.line()}", err=True)
    if not any(report[k] for k in ("applied", "stopped")):
        click.echo("Nothing was applied.", err=True)
    if report["recorded"]:
        click.echo(f"To resume, re-run `{report['resume']}` (the install record has the "
                   "settings and the -f/--set layer): it applies what is missing and "
                   "changes nothing twice.", err=True)
    else:
        click.echo("To resume, run the same command again.", err=True)
