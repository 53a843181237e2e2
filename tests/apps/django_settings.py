"""The example project's settings, with the test URLconf (:mod:`tests.apps.django_site`) as its root."""

from examples.django_project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.apps.django_site"
