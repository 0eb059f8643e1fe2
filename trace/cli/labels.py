"""`flask labels issue|void|reprint|list|profiles`."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask.cli import AppGroup

from trace.errors import DomainError
from trace.extensions import config, db
from trace.labels.profiles import list_profiles
from trace.labels.writers import FORMATS
from trace.models import Batch, Enterprise, LabelRun, User
from trace.models.enums import EnterpriseStatus, Role, RunStatus
from trace.services import labels
from trace.services.actors import Actor
from trace.services.auth import actor_for
from trace.services.keys import load_keyring

group = AppGroup("labels", help="Issue, void and reprint label runs.")


def _actor_for_batch(batch_id: int, username: str | None) -> Actor:
    """The CLI runs on the server: it acts for the batch's enterprise, or as a named user."""
    session = db()
    if username:
        user = session.query(User).filter_by(username=username).one_or_none()
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        return actor_for(user)
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise click.ClickException(f"no batch {batch_id}")
    enterprise = session.get(Enterprise, batch.enterprise_id)
    return Actor(
        user_id=None,
        role=Role.ENTERPRISE_ADMIN,
        enterprise_id=batch.enterprise_id,
        # On the server too, a suspended enterprise issues no labels.
        enterprise_suspended=(
            enterprise is not None and enterprise.status == EnterpriseStatus.SUSPENDED.value
        ),
    )


def _fail(exc: DomainError) -> click.ClickException:
    fields = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.fields.items())
    return click.ClickException(exc.detail + (f" ({fields})" if fields else ""))


@group.command("issue")
@click.option("--batch", "batch_id", type=int, required=True)
@click.option("--count", type=int, required=True)
@click.option("--profile", required=True, help="A printer_profiles/<name>.toml")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--level", type=click.Choice(["item", "batch"]), default="item")
@click.option("--fields", default=None, help="Label fields, comma-separated")
@click.option("--copies", type=int, default=1, help="Batch level: labels to print")
@click.option("--user", "username", default=None, help="Act as this user")
def issue_command(
    batch_id: int,
    count: int,
    profile: str,
    fmt: str,
    out: Path,
    level: str,
    fields: str | None,
    copies: int,
    username: str | None,
) -> None:
    """Issue a run and write its print file. A failure while writing marks the run failed;
    its serial range is never handed out again."""
    session = db()
    cfg = config()
    keyring = load_keyring(cfg)
    started = time.perf_counter()
    template = {"label": fields.split(",")} if fields else None
    try:
        actor = _actor_for_batch(batch_id, username)
        run = labels.issue_run(
            session,
            actor,
            keyring,
            labels.RunRequest(
                batch_id=batch_id,
                count=count,
                profile=profile,
                format=fmt,
                level=level,
                template=template,
            ),
            cfg.max_labels_per_run,
            status=RunStatus.ISSUING,
        )
        job = labels.prepare_job(session, run, copies=copies)
    except DomainError as exc:
        session.rollback()
        raise _fail(exc) from exc
    session.commit()  # the range is taken from here on, whatever happens next
    try:
        written = labels.write_job_file(job, keyring, cfg.public_base_url, out)
    except BaseException as exc:
        labels.mark_failed(session, run, f"{type(exc).__name__}: {exc}")
        session.commit()
        raise click.ClickException(f"run {run.id} failed while writing: {exc}") from exc
    labels.mark_issued(session, run)
    session.commit()
    seconds = time.perf_counter() - started
    click.echo(
        f"run {run.id}: {written} labels, serials {run.first_serial}..{run.last_serial}, "
        f"{fmt} -> {out} ({out.stat().st_size:,} bytes, {seconds:.2f} s)"
    )


@group.command("reprint")
@click.option("--run", "run_id", type=int, required=True)
@click.option("--first", type=int, default=None)
@click.option("--last", type=int, default=None)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None)
@click.option("--profile", default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def reprint_command(
    run_id: int,
    first: int | None,
    last: int | None,
    fmt: str | None,
    profile: str | None,
    out: Path,
) -> None:
    """Write a run (or a serial range of it) again; voided labels are left out."""
    session = db()
    run = session.get(LabelRun, run_id)
    if run is None:
        raise click.ClickException(f"no run {run_id}")
    try:
        job = labels.prepare_job(session, run, fmt=fmt, profile=profile, first=first, last=last)
    except DomainError as exc:
        raise _fail(exc) from exc
    written = labels.write_job_file(job, load_keyring(config()), config().public_base_url, out)
    click.echo(f"run {run_id}: {written} labels -> {out}")


@group.command("void")
@click.option("--run", "run_id", type=int, required=True)
@click.option("--first", type=int, required=True)
@click.option("--last", type=int, default=None)
@click.option("--reason", default="")
def void_command(run_id: int, first: int, last: int | None, reason: str) -> None:
    """Void a serial range of a run (damaged or lost labels)."""
    session = db()
    run = session.get(LabelRun, run_id)
    if run is None:
        raise click.ClickException(f"no run {run_id}")
    actor = Actor(user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=run.enterprise_id)
    try:
        void = labels.void_range(
            session, actor, run_id, first, last if last is not None else first, reason
        )
    except DomainError as exc:
        raise _fail(exc) from exc
    session.commit()
    click.echo(f"voided {void.first_serial}..{void.last_serial} of run {run_id}")


@group.command("list")
@click.option("--batch", "batch_id", type=int, default=None, help="Only this batch's runs.")
def list_command(batch_id: int | None) -> None:
    """List label runs with their serial ranges, voided and scanned counts."""
    session = db()
    admin = Actor(user_id=None, role=Role.PLATFORM_ADMIN)
    for row in labels.list_runs(session, admin, batch_id):
        run = row["run"]
        click.echo(
            f"{run.id:>6} batch {run.batch_id:>5} {run.status:<8} {run.count:>9,} labels "
            f"serials {run.first_serial}..{run.last_serial} voided {row['voided']} "
            f"scanned {row['scanned']} {run.format}/{run.profile}"
        )


@group.command("profiles")
def profiles_command() -> None:
    """The printer profiles available."""
    for p in list_profiles():
        click.echo(f"{p.name:<24} {p.language:<5} {p.dpi} dpi {', '.join(p.formats)}")
