"""Contender: the recipe as a Flask view returning a generator ``Response``."""

from __future__ import annotations

import recipe
from flask import Flask, Response, request

app = Flask(__name__)


@app.route("/")
def stream_view() -> Response:
    return Response(
        recipe.stream(recipe.run_params(request.environ)),
        mimetype="text/plain",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


application = app
