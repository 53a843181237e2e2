"""Runnable examples of wsgi_logstream deployments; each module's docstring says how to run it."""
