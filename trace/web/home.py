"""Home page and sign-in for the web pages (dashboards)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from trace.errors import Unauthenticated
from trace.extensions import db
from trace.services import auth
from trace.validation import is_local_path

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    return render_template("home.html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    error = None
    if request.method == "POST":
        try:
            user = auth.authenticate_password(
                db(), request.form.get("username", ""), request.form.get("password", "")
            )
        except Unauthenticated:
            error = "login.failed"
        else:
            session.clear()
            session["user_id"] = user.id
            target = request.args.get("next", "")
            if not is_local_path(target):
                target = url_for("home.index")
            return redirect(target)
    return render_template("login.html", error=error)


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("home.index"))
