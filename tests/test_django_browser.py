"""The Django example in headless Chromium: log in through its form, reindex from the admin, watch, cancel.

gunicorn serves the example project (its own settings and URLs, the
database made first by :mod:`tests.apps.django_site`). The browser logs in
through the example's login form, selects two products in the admin's
changelist and runs "Reindex the selected products", lands on the job's page
and sees its first line while the reindex waits 30 s for the next product
(``EXAMPLE_REINDEX_DELAY``), so the line was streamed live. Then it cancels
the job with the index page's cancel button, a form carrying Django's CSRF
token (CSRF is on), and the job's page shows the job cancelled.

A screenshot of the job's page is kept in ``tests/artifacts/django-job.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.browser import Chromium, Page, wait_for
from tests.nginx import django_example
from tests.servers import Program

pytestmark = pytest.mark.servers

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BODY = "document.body ? document.body.innerText : ''"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Program]:
    env = {
        "EXAMPLE_DJANGO_DB": str(tmp_path / "db.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "examples.django_project.settings",
        "EXAMPLE_REINDEX_DELAY": "30",
    }
    with django_example(env) as program:
        yield program


def located(page: Page, path_start: str) -> str:
    return str(wait_for(page, f"location.pathname.startsWith({json.dumps(path_start)}) && location.pathname", 15))


def test_a_user_logs_in_starts_a_reindex_from_the_admin_watches_it_and_cancels_it(site: Program) -> None:
    with Chromium() as chromium, chromium.new_page() as page:
        # The example's own login form, filled in and submitted as a person does.
        page.navigate(f"{site.url}/accounts/login/?next=/admin/catalog/product/")
        wait_for(page, "document.querySelector('#login') !== null")
        page.evaluate(
            "document.querySelector('#username').value = 'ada';"
            "document.querySelector('#password').value = 'pw';"
            "document.querySelector('#login').click()"
        )
        located(page, "/admin/catalog/product/")
        wait_for(page, "document.querySelector('select[name=action]') !== null")
        # Select desk 1 and desk 3, choose the action, press Go.
        page.evaluate(
            """(() => {
              for (const row of document.querySelectorAll('#result_list tbody tr')) {
                if (/desk [13]/.test(row.innerText)) row.querySelector('input.action-select').click();
              }
              document.querySelector('select[name=action]').value = 'start_reindex_search_job';
              document.querySelector('button[name=index]').click();
            })()"""
        )
        job = located(page, "/ops/jobs/")
        # The first line arrives while the reindex waits 30 s before its first product.
        wait_for(page, f"({BODY}).includes('reindexing 2 selected products')", 15)
        assert "indexed desk" not in page.evaluate(BODY)
        page.screenshot(ARTIFACTS / "django-job.png")
        # The index page lists the job with a cancel button: a form carrying the CSRF token.
        page.navigate(f"{site.url}/")
        wait_for(page, f"document.querySelector('a[href=\"{job}\"]') !== null")
        assert page.evaluate("document.querySelector('form[action$=\"/cancel\"] [name=csrfmiddlewaretoken]') !== null")
        page.evaluate(f"document.querySelector('form[action=\"{job}/cancel\"] button').click()")
        located(page, job)
        wait_for(page, f"({BODY}).includes('cancelled after 0 products')", 15)
        assert "indexed desk" not in page.evaluate(BODY)
