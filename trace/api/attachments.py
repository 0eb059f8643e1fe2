"""Photos and videos on batches and events: streamed upload, Range-served download."""

from __future__ import annotations

from typing import Any

from flask import Response, request, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError

from trace.api.auth import current_actor
from trace.api.schemas.records import AttachmentForm, AttachmentOut
from trace.errors import ValidationFailed
from trace.extensions import config, db, storage
from trace.services import media

blp = Blueprint("attachments", __name__, description="Photos and videos")

# Multipart framing around the file: boundaries, part headers, small form fields.
_FORM_OVERHEAD = 64 * 1024


def send_attachment(attachment: Any) -> Response:
    """Serve a stored file with HTTP Range support (206) so phones can seek in videos."""
    response = send_file(
        storage().path(attachment.storage_key),
        mimetype=attachment.content_type,
        conditional=True,
        etag=attachment.sha256,
        download_name=attachment.filename,
        as_attachment=False,
        max_age=86400,
    )
    response.headers["Accept-Ranges"] = "bytes"
    return response


@blp.route("/batches/<int:batch_id>/attachments")
class BatchAttachments(MethodView):
    @blp.response(200, AttachmentOut(many=True))
    def get(self, batch_id: int) -> Any:
        return media.list_attachments(db(), current_actor(), batch_id)

    @blp.response(201, AttachmentOut)
    @blp.doc(
        requestBody={
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "event_id": {"type": "integer"},
                            "caption": {"type": "string"},
                            "is_public": {"type": "boolean"},
                        },
                    }
                }
            }
        }
    )
    def post(self, batch_id: int) -> Any:
        """Upload a photo or video (multipart field `file`). Over the size limit: 413."""
        actor = current_actor()
        limit = config().max_upload_bytes
        # Werkzeug refuses bodies over this before parsing (Content-Length) or while
        # streaming (chunked), so an oversized upload is never spooled whole.
        request.max_content_length = limit + _FORM_OVERHEAD
        upload = request.files.get("file")
        if upload is None:
            raise ValidationFailed("No file.", fields={"file": ["Send the file as field 'file'."]})
        try:
            form = AttachmentForm().load(request.form.to_dict())
        except ValidationError as exc:
            raise ValidationFailed(
                "Invalid form fields.",
                fields={
                    k: (v if isinstance(v, list) else [str(v)])
                    for k, v in exc.normalized_messages().items()
                },
            ) from exc
        return media.add_attachment(
            db(),
            storage(),
            actor,
            batch_id,
            upload.stream,
            upload.filename or "upload",
            limit,
            event_id=form.get("event_id"),
            caption=form["caption"],
            is_public=form["is_public"],
        )


@blp.route("/attachments/<int:attachment_id>")
class AttachmentItem(MethodView):
    @blp.response(200, AttachmentOut)
    def get(self, attachment_id: int) -> Any:
        return media.get_attachment(db(), current_actor(), attachment_id)


@blp.route("/attachments/<int:attachment_id>/content")
class AttachmentContent(MethodView):
    @blp.response(200, content_type="application/octet-stream")
    def get(self, attachment_id: int) -> Response:
        """The file itself; honours Range requests (206 Partial Content)."""
        return send_attachment(media.get_attachment(db(), current_actor(), attachment_id))
