"""The ``authorize`` hook at the WSGI level: asked before anything runs or is shown, for every action.

These are the refusals and the visibility that the Django and Flask
integrations build on, proven with the plain apps and behind
``LogStreamMiddleware`` for stacks that are neither. A refused request is
shown to have run nothing by a counting target and an empty store. The
README's policies are run here as the README prints them.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.apps.targets import CountingTarget
from tests.inproc import TestApp, call
from wsgi_logstream import LogStreamMiddleware, Refused, jobs, logstream, wait_cancelled
from wsgi_logstream.jobs import JobsApp
from wsgi_logstream.record import JobRecord

README = Path(__file__).resolve().parent.parent / "README.md"
Hook = Callable[[dict[str, Any], str, "JobRecord | None"], Any]


def readme_policies() -> dict[str, Hook]:
    """The policies as the README prints them, run as they are (the README's ``jobs(...)`` line included)."""
    text = README.read_text()
    section = text.split("## Who may see and stop which job", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the README lost its policies"
    namespace: dict[str, Any] = {"jobs": jobs, "run_import": lambda: None}
    exec(compile(code.group(1), str(README), "exec"), namespace)
    return {name: namespace[name] for name in ("only_staff", "only_the_owner", "owner_and_staff")}


POLICIES = readme_policies()


class Gate:
    """A target that waits for the test (bounded, and cut short by a cancel) so a job is caught running."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs = 0

    def __call__(self) -> None:
        self.runs += 1
        for _ in range(600):  # 30 s at most
            if self.release.is_set() or wait_cancelled(0.05):
                return


@pytest.fixture
def make_jobs() -> Iterator[Callable[..., JobsApp]]:
    made: list[JobsApp] = []

    def make(target: Callable[..., Any], **options: Any) -> JobsApp:
        app = jobs(target, formatter="%(message)s", **options)
        made.append(app)
        return app

    yield make
    for app in made:
        assert app.shutdown(10), "a job did not end when cancelled"


def as_user(user: str | None, **extra: str) -> dict[str, str]:
    return {"REMOTE_USER": user, **extra} if user else dict(extra)


def start(test_app: TestApp, user: str | None) -> str:
    """Start a job as ``user``; its id."""
    reply = test_app.post("/", extra_environ=as_user(user), status=303)
    return str(reply.headers["Location"]).rsplit("/", 1)[1]


def listed(test_app: TestApp, user: str | None) -> list[str]:
    reply = test_app.get("/", headers={"Accept": "application/json"}, extra_environ=as_user(user), status=200)
    return [job["id"] for job in json.loads(reply.body)["jobs"]]


# -- the plain stream -------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [False, None, 1, "yes", [True]], ids=repr)
def test_anything_but_true_refuses_a_plain_stream_with_403_and_runs_nothing(answer: Any) -> None:
    target = CountingTarget()
    app = TestApp(logstream(target, authorize=lambda environ, action, job: answer))
    reply = app.get("/", status=403)
    assert reply.content_type == "text/plain"
    assert reply.text == "not allowed to stream here\n"
    app.post("/", status=403)
    assert target.runs == 0


def test_refused_with_401_gives_a_401_and_the_hooks_own_message() -> None:
    def hook(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        raise Refused("log in to see the reindex", status=401)

    target = CountingTarget()
    reply = TestApp(logstream(target, authorize=hook)).get("/", status=401)
    assert reply.text == "log in to see the reindex\n"
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="wsgi_logstream"'  # HTTP requires a challenge
    assert target.runs == 0


def test_a_401_carries_the_challenge_the_hook_names() -> None:
    def hook(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        raise Refused("log in", status=401, challenge='Cookie realm="admin"')

    reply = TestApp(logstream(CountingTarget(), authorize=hook)).get("/", status=401)
    assert reply.headers["WWW-Authenticate"] == 'Cookie realm="admin"'
    with pytest.raises(ValueError, match="challenge"):
        Refused("log in", status=401, challenge="Basic\r\nSet-Cookie: x=1")


def test_refused_accepts_only_the_statuses_a_refusal_can_have() -> None:
    with pytest.raises(ValueError, match="401, 403 or 404"):
        Refused("no", status=500)


def test_the_plain_stream_asks_with_the_stream_action_and_no_job_then_runs() -> None:
    asked: list[tuple[str, Any, str | None]] = []

    def hook(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        asked.append((action, job, environ.get("REMOTE_USER")))
        return True

    target = CountingTarget()
    reply = TestApp(logstream(target, authorize=hook)).get("/", extra_environ={"REMOTE_USER": "ada"})
    assert b"ran <1>" in reply.body
    assert asked == [("stream", None, "ada")]


def test_head_and_the_probe_are_refused_like_the_stream() -> None:
    target = CountingTarget()
    app = TestApp(logstream(target, authorize=lambda environ, action, job: False))
    app.head("/", status=403)
    reply = app.get("/?probe=1&lines=1&interval=0.01", status=403)
    assert b"probe" not in reply.body
    assert target.runs == 0


def test_the_middleware_asks_its_hook_for_its_routes_and_leaves_the_site_alone() -> None:
    target = CountingTarget()

    def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the site\n"]

    def staff(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        return environ.get("REMOTE_USER") == "ada"

    app = TestApp(LogStreamMiddleware(site, {"/ops/reindex": target}, authorize=staff))
    app.get("/ops/reindex", extra_environ={"REMOTE_USER": "bob"}, status=403)
    app.get("/ops/reindex", status=403)
    assert target.runs == 0
    assert app.get("/", status=200).text == "the site\n"
    assert b"ran <1>" in app.get("/ops/reindex", extra_environ={"REMOTE_USER": "ada"}).body


# -- jobs ---------------------------------------------------------------------------------------


def test_a_refused_start_runs_nothing_and_stores_no_job(make_jobs: Callable[..., JobsApp]) -> None:
    target = CountingTarget()
    app = make_jobs(target, authorize=lambda environ, action, job: action != "start")
    reply = TestApp(app).post("/", status=403)
    assert reply.text == "not allowed to start here\n"
    assert target.runs == 0
    assert app.records() == []


def test_jobs_ask_each_action_with_the_job_concerned(make_jobs: Callable[..., JobsApp]) -> None:
    asked: list[tuple[str, str | None]] = []

    def hook(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        asked.append((action, job.id if job else None))
        return True

    gate = Gate()
    app = make_jobs(gate, authorize=hook)
    test_app = TestApp(app)
    job_id = start(test_app, "ada")
    assert asked == [("start", None)]
    asked.clear()
    listed(test_app, "ada")
    assert asked == [("list", None), ("view", job_id)]  # the list asks "view" for each job it would show
    asked.clear()
    test_app.head(f"/{job_id}", status=200)
    assert asked == [("view", job_id)]
    asked.clear()
    test_app.post(f"/{job_id}/cancel", status=303)
    assert asked == [("cancel", job_id)]
    gate.release.set()


def test_the_owner_is_remote_user_by_default_or_what_the_owner_option_says(
    make_jobs: Callable[..., JobsApp],
) -> None:
    by_default = make_jobs(CountingTarget())
    job_id = start(TestApp(by_default), "ada")
    record = by_default.lookup(job_id)
    assert record is not None and record.owner == "ada"
    anonymous = start(TestApp(by_default), None)
    record = by_default.lookup(anonymous)
    assert record is not None and record.owner is None
    custom = make_jobs(CountingTarget(), owner=lambda environ: environ["HTTP_X_USER"].lower())
    job_id = TestApp(custom).post("/", headers={"X-User": "BOB"}, status=303).headers["Location"].rsplit("/", 1)[1]
    record = custom.lookup(job_id)
    assert record is not None and record.owner == "bob"
    listed_json = TestApp(custom).get("/", headers={"Accept": "application/json"}).json
    assert listed_json["jobs"][0]["owner"] == "bob"


def test_a_job_refused_to_its_viewer_shows_nothing_of_its_log(make_jobs: Callable[..., JobsApp]) -> None:
    app = make_jobs(CountingTarget(), authorize=POLICIES["only_the_owner"])
    test_app = TestApp(app)
    job_id = start(test_app, "ada")
    assert app.lookup(job_id) is not None
    for fmt in ("text", "html", "sse", "ndjson"):
        reply = test_app.get(f"/{job_id}?format={fmt}", extra_environ=as_user("bob"), status=403)
        assert b"ran <" not in reply.body
    test_app.get(f"/{job_id}?probe=1&lines=1&interval=0.01", extra_environ=as_user("bob"), status=403)
    test_app.head(f"/{job_id}", extra_environ=as_user("bob"), status=403)
    assert b"ran <1>" in test_app.get(f"/{job_id}?format=text", extra_environ=as_user("ada")).body


def test_a_hook_may_hide_a_job_it_refuses_behind_a_404(make_jobs: Callable[..., JobsApp]) -> None:
    def hide(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        if job is not None and job.owner != environ.get("REMOTE_USER"):
            raise Refused("no such job", status=404)
        return True

    test_app = TestApp(make_jobs(CountingTarget(), authorize=hide))
    job_id = start(test_app, "ada")
    assert test_app.get(f"/{job_id}", extra_environ=as_user("bob"), status=404).text == "no such job\n"


def test_a_refused_cancel_leaves_the_job_running(make_jobs: Callable[..., JobsApp]) -> None:
    gate = Gate()
    app = make_jobs(gate, authorize=POLICIES["only_the_owner"])
    test_app = TestApp(app)
    job_id = start(test_app, "ada")
    test_app.post(f"/{job_id}/cancel", extra_environ=as_user("bob"), status=403)
    record = app.lookup(job_id)
    assert record is not None and not record.cancel_requested
    test_app.post(f"/{job_id}/cancel", extra_environ=as_user("ada"), status=303)
    record = app.lookup(job_id)
    assert record is not None and record.cancel_requested
    gate.release.set()


def test_the_list_shows_each_person_only_the_jobs_they_may_view(make_jobs: Callable[..., JobsApp]) -> None:
    app = make_jobs(CountingTarget(), authorize=POLICIES["only_the_owner"])
    test_app = TestApp(app)
    ada = start(test_app, "ada")
    bob = start(test_app, "bob")
    assert listed(test_app, "ada") == [ada]
    assert listed(test_app, "bob") == [bob]
    page = test_app.get("/", extra_environ=as_user("bob")).text
    assert bob in page and ada not in page
    test_app.get("/", status=401)


def test_a_refused_list_shows_nothing(make_jobs: Callable[..., JobsApp]) -> None:
    app = make_jobs(CountingTarget(), authorize=POLICIES["only_staff"])
    test_app = TestApp(app)
    job_id = start(test_app, "ada")
    for accept in ("application/json", "text/html"):
        reply = test_app.get("/", headers={"Accept": accept}, extra_environ=as_user("bob"), status=403)
        assert job_id.encode() not in reply.body
    test_app.head("/", extra_environ=as_user("bob"), status=403)


def test_a_view_hook_that_refuses_by_raising_hides_the_job_from_the_list(make_jobs: Callable[..., JobsApp]) -> None:
    def hook(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        if action == "view":
            raise Refused("not yours")
        return True

    test_app = TestApp(make_jobs(CountingTarget(), authorize=hook))
    start(test_app, "ada")
    assert listed(test_app, "ada") == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("only_staff", {"ada": {"ada", "bob"}, "bob": None, None: None}),
        ("only_the_owner", {"ada": {"ada"}, "bob": {"bob"}, None: None}),
        ("owner_and_staff", {"ada": {"ada", "bob"}, "bob": {"bob"}, None: None}),
    ],
)
def test_the_readme_policies_show_each_person_what_they_say(
    make_jobs: Callable[..., JobsApp], policy: str, expected: dict[str | None, set[str] | None]
) -> None:
    """ada is staff (the README's ``STAFF``), bob is not, None is anonymous; None in ``expected``: refused."""
    app = make_jobs(CountingTarget(), authorize=POLICIES[policy])
    owners: dict[str, str] = {}
    for user in ("ada", "bob"):
        job = app.start(owner=user)  # from code: not asked, so every policy has both jobs to show
        assert job.wait(10)
        owners[job.id] = user
    test_app = TestApp(app)
    for user, sees in expected.items():
        if sees is None:
            test_app.get("/", headers={"Accept": "application/json"}, extra_environ=as_user(user), status="4*")
            for job_id in owners:
                test_app.get(f"/{job_id}", extra_environ=as_user(user), status="4*")
            continue
        assert {owners[job_id] for job_id in listed(test_app, user)} == sees
        for job_id, owner in owners.items():
            status = 200 if owner in sees else 403
            test_app.get(f"/{job_id}?format=text", extra_environ=as_user(user), status=status)
            test_app.post(f"/{job_id}/cancel", extra_environ=as_user(user), status=303 if owner in sees else 403)


def test_the_readme_policies_refuse_the_anonymous_with_401_where_they_say_so() -> None:
    environ: dict[str, Any] = {}
    for name in ("only_the_owner", "owner_and_staff"):
        with pytest.raises(Refused) as refusal:
            POLICIES[name](environ, "list", None)
        assert refusal.value.status == 401
    assert POLICIES["only_staff"](environ, "list", None) is False


def test_jobs_behind_the_middleware_keep_their_refusals_and_visibility(make_jobs: Callable[..., JobsApp]) -> None:
    def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    gate = Gate()
    imports = make_jobs(gate, authorize=POLICIES["owner_and_staff"])
    test_app = TestApp(LogStreamMiddleware(site, {"/import": imports}))
    test_app.post("/import", status=401)
    assert gate.runs == 0
    bob = test_app.post("/import", extra_environ=as_user("bob"), status=303).headers["Location"]
    assert bob.startswith("/import/")
    carol = test_app.post("/import", extra_environ=as_user("carol"), status=303).headers["Location"]
    reply = test_app.get("/import", headers={"Accept": "application/json"}, extra_environ=as_user("bob"))
    assert [job["id"] for job in reply.json["jobs"]] == [bob.rsplit("/", 1)[1]]
    reply = test_app.get("/import", headers={"Accept": "application/json"}, extra_environ=as_user("ada"))
    assert len(reply.json["jobs"]) == 2
    test_app.get(carol, extra_environ=as_user("bob"), status=403)
    test_app.post(f"{carol}/cancel", extra_environ=as_user("bob"), status=403)
    test_app.post(f"{carol}/cancel", extra_environ=as_user("ada"), status=303)
    with call(LogStreamMiddleware(site, {"/import": imports}), path=bob, query="format=text") as stream:
        assert stream.code == 401  # anonymous: the policy asks for a login
    gate.release.set()


def test_form_fields_go_into_the_start_form_escaped(make_jobs: Callable[..., JobsApp]) -> None:
    app = make_jobs(CountingTarget(), form_fields=lambda environ: {"csrf_token": '"><script>x</script>'})
    page = TestApp(app).get("/").text
    assert '<input type="hidden" name="csrf_token" value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;">' in page
    assert "<script>x" not in page
