"""A minimal Django project whose search reindex streams its log to the browser.

Run it under gunicorn from the repository's root::

    gunicorn -c examples/gunicorn.conf.py examples.django_project.wsgi:application

Then ``curl -N http://127.0.0.1:8000/ops/reindex`` prints each line as the
reindex logs it, ending with the summary::

    -- Reindex search: started 2025-01-01 12:00:00 --
    2025-01-01 12:00:00,739 INFO    search.reindex: reindexing 4 batches of 250 products
    2025-01-01 12:00:00,989 INFO    search.reindex: batch 1/4: 250 products indexed
    -- progress 1/4 (25%) --
    ...
    2025-01-01 12:00:01,741 INFO    search.reindex: search index is up to date
    -- ok (after 1.00s: 6 lines, 0 dropped) --

``wsgi.py`` mounts the stream around Django's WSGI application, so Django's
views (``/`` here) and its 404s are unchanged, and a stream request never
passes through Django's middleware (compression middleware included, which
would otherwise hold the stream back).
"""
