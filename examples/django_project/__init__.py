"""A Django project whose admins reindex search and watch the log, behind Django's own login.

Run it from the repository's root (the database is a SQLite file, at
``$EXAMPLE_DJANGO_DB`` or ``example-django.sqlite3`` in the temp dir)::

    python -m django migrate --settings examples.django_project.settings
    python -m django createsuperuser --settings examples.django_project.settings
    gunicorn -c examples/gunicorn.conf.py examples.django_project.wsgi:application

Then log in at http://127.0.0.1:8000/accounts/login/ and:

- http://127.0.0.1:8000/ops/reindex/?format=html runs a reindex and streams its
  log (``login_required`` and ``permission_required("catalog.run_reindex")``
  on the URL pattern: anonymous is sent to the login page, a user without the
  permission gets ``403``, and nothing runs);
- http://127.0.0.1:8000/ops/jobs/ lists the reindex jobs you may see and starts
  one (its form carries Django's CSRF token); each job has its own page;
- in the admin, select products and run "Reindex the selected products": a
  job starts for them and the browser goes to its page.

The streams are Django views (``wsgi_logstream.django.urls``), so every
middleware in ``settings.py`` runs for them, ``GZipMiddleware`` and
``ConditionalGetMiddleware`` included, and the log still arrives line by line.
"""
