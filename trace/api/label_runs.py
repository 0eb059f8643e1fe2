"""Label runs: issue, download (streamed), send to a network printer, void, reprint."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.labels import (
    FileQuery,
    LabelRunIn,
    LabelRunListItem,
    LabelRunOut,
    LabelRunQuery,
    PrintIn,
    PrintOut,
    VoidIn,
    VoidOut,
)
from trace.crypto.codes import parse
from trace.errors import ValidationFailed
from trace.extensions import config, db
from trace.labels.writers import MEDIA_TYPES, file_extension
from trace.services import labels
from trace.services.keys import load_keyring

blp = Blueprint("label_runs", __name__, description="Label runs (标签批次)")

PIPE_CHUNK = 256 * 1024


def _job(run_id: int, query: dict[str, Any]) -> labels.PrintJob:
    run = labels.get_printable_run(db(), current_actor(), run_id)
    return labels.prepare_job(
        db(),
        run,
        fmt=query.get("format"),
        profile=query.get("profile"),
        first=query.get("first_serial"),
        last=query.get("last_serial"),
        copies=query.get("copies", 1),
    )


def _stream(job: labels.PrintJob) -> Iterator[bytes]:
    """Run the writer in a thread feeding a pipe, so the response streams while it writes
    and a 300k-label file never sits in memory. A client that goes away closes the pipe,
    which stops the writer."""
    keyring = load_keyring(config())
    base = config().public_base_url
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=PIPE_CHUNK) as out:
                labels.write_job(job, keyring, base, out)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # surfaced to the reader below
            failure.append(exc)

    thread = threading.Thread(target=produce, name=f"label-run-{job.run_id}", daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(PIPE_CHUNK):
            yield chunk
    thread.join()
    if failure:
        # Headers are sent already: the truncated body and the log are what remains.
        raise RuntimeError(f"label file for run {job.run_id} failed") from failure[0]


@blp.route("/label-runs")
class LabelRuns(MethodView):
    @blp.arguments(LabelRunQuery, location="query")
    @blp.response(200, LabelRunListItem(many=True))
    def get(self, query: dict[str, Any]) -> Any:
        """Runs with label, voided and scanned counts."""
        rows = labels.list_runs(db(), current_actor(), query.get("batch_id"))
        out = []
        for row in rows:
            run = row["run"]
            run.voided, run.scanned = row["voided"], row["scanned"]
            out.append(run)
        return out

    @blp.arguments(LabelRunIn)
    @blp.response(201, LabelRunOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Issue a run: one row, a contiguous serial range. Then download its file."""
        req = labels.RunRequest(**data)
        return labels.issue_run(
            db(), current_actor(), load_keyring(config()), req, config().max_labels_per_run
        )


@blp.route("/label-runs/<int:run_id>")
class LabelRunItem(MethodView):
    @blp.response(200, LabelRunOut)
    def get(self, run_id: int) -> Any:
        return labels.get_run(db(), current_actor(), run_id)


@blp.route("/label-runs/<int:run_id>/file")
class LabelRunFile(MethodView):
    @blp.arguments(FileQuery, location="query")
    @blp.response(200, content_type="application/octet-stream")
    def get(self, query: dict[str, Any], run_id: int) -> Response:
        """The print file, streamed. first_serial/last_serial reprint a range; voided
        labels are left out."""
        job = _job(run_id, query)
        name = f"labels-run{run_id}-{job.first}-{job.last}.{file_extension(job.fmt)}"
        response = Response(stream_with_context(_stream(job)), mimetype=MEDIA_TYPES[job.fmt])
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response.headers["X-Label-Count"] = str(job.last - job.first + 1)
        return response


@blp.route("/label-runs/<int:run_id>/print")
class LabelRunPrint(MethodView):
    @blp.arguments(PrintIn)
    @blp.response(200, PrintOut)
    def post(self, data: dict[str, Any], run_id: int) -> Any:
        """Send the run (or a range) to a network printer over raw TCP (port 9100).
        A refused or dropped connection answers 502; send again when the printer is back."""
        from trace.labels.printer import PrinterError, send_to_printer

        job = _job(run_id, data)
        try:
            sent = send_to_printer(data["host"], data["port"], _stream(job))
        except PrinterError as exc:
            raise labels.PrinterUnavailable(str(exc)) from exc
        return {"run_id": run_id, "bytes_sent": sent, "host": data["host"], "port": data["port"]}


@blp.route("/label-runs/<int:run_id>/voids")
class LabelRunVoids(MethodView):
    @blp.arguments(VoidIn)
    @blp.response(201, VoidOut)
    def post(self, data: dict[str, Any], run_id: int) -> Any:
        """Void one code (`code`) or a serial range (damaged or lost labels)."""
        first, last = data.get("first_serial"), data.get("last_serial")
        if "code" in data:
            code = parse(load_keyring(config()), data["code"])
            if code is None or code.run_id != run_id:
                raise ValidationFailed(
                    "Not a code of this run.", fields={"code": ["Unknown code for this run."]}
                )
            first = last = code.serial
        elif first is None:
            raise ValidationFailed(
                "Say what to void.", fields={"first_serial": ["Give a range or a code."]}
            )
        return labels.void_range(
            db(),
            current_actor(),
            run_id,
            first,
            last if last is not None else first,
            data["reason"],
        )
