"""How jobs are shown outside their log: the JSON of one job and the list page.

Pure functions of plain :class:`~wsgi_logstream.record.JobRecord` data, so a
job looks the same whichever process runs it and whichever worker shows it.
Everything from the record is escaped here (``html.escape``) or serialised by
``json.dumps``.
"""

from __future__ import annotations

import html
import time
from typing import Any, Mapping, Sequence

from .formats import summary_object
from .record import JobRecord

__all__ = ["cancel_form", "job_json", "jobs_page"]


def job_json(record: JobRecord) -> dict[str, Any]:
    """One job as the list's JSON and ``GET /<id>?format=json``-style clients see it."""
    obj: dict[str, Any] = {
        "id": record.id,
        "title": record.title,
        "status": record.status,
        "owner": record.owner,
        "created": record.created,
        "started": record.started,
        "ended": record.ended,
        "records": record.records,
        "first_seq": record.first_seq,
        "next_seq": record.next_seq,
    }
    if record.progress is not None:
        progress = record.progress
        obj["progress"] = {"done": progress.done, "total": progress.total, "message": progress.message or None}
    summary = record.summary()
    if summary is not None:
        obj["summary"] = summary_object(summary, 0, record.next_seq)
        del obj["summary"]["dropped"]
    return obj


def cancel_form(action: str, fields: Mapping[str, str]) -> str:
    """The cancel button of a running job's page: a form that posts to ``action`` with ``fields`` hidden."""
    return (
        f'<form method=post action="{html.escape(action)}" class=cancel>{_hidden(fields)}'
        "<button type=submit>Cancel</button></form>"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )


def jobs_page(
    records: Sequence[JobRecord],
    *,
    title: str,
    base: str,
    allow_start: bool,
    form_fields: Mapping[str, str],
    stylesheet: str,
) -> str:
    """The jobs list as an HTML page; ``base`` is the jobs app's mount point, ``stylesheet`` the URL of
    ``index.css`` (neither escaped yet). No inline style: the page is served with the viewer's CSP."""
    base = html.escape(base)
    rows = []
    for record in records:
        progress = record.progress
        bar = ""
        if progress is not None and progress.total:
            bar = f'<progress value="{progress.done:g}" max="{progress.total:g}"></progress>'
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        status = html.escape(record.status)
        owner = html.escape(record.owner or "")
        rows.append(
            f'<tr class="{status}"><td><a href="{base}/{html.escape(record.id)}">{html.escape(record.id)}</a></td>'
            f"<td>{status}</td><td>{bar}</td><td>{record.records}</td><td>{when}</td><td>{owner}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>job</th><th>status</th><th>progress</th><th>lines</th><th>started</th>"
        f"<th>by</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No jobs yet.</p>"
    )
    form = (
        f'<form method="post" action="{base}/">{_hidden(form_fields)}<button type="submit">Start a new run</button></form>'
        if allow_start
        else ""
    )
    safe_title = html.escape(title)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{safe_title}: jobs</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="stylesheet" href="{html.escape(stylesheet)}">'
        f"</head><body><h1>{safe_title}</h1>{form}{table}</body></html>"
    )
