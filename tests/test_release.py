"""The release as a user gets it: the built wheel and sdist, the README's first command, the docs.

``scripts/test`` builds the sdist and the wheel, installs the wheel into a fresh virtual environment from Debian's
``/usr/bin/python3`` and runs this suite from a copy of the tree that has no ``wsgi_logstream/`` package, with
``WSGI_LOGSTREAM_INSTALLED=wheel``, ``WSGI_LOGSTREAM_DIST`` (where the sdist and wheel are) and
``WSGI_LOGSTREAM_SOURCE`` (the checkout) set. Run directly (``pytest tests/test_release.py``), the tests build
the distributions themselves from the checkout, and the check that the suite imports the wheel is skipped.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import email.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import threading
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest
from servers import wait_until

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("WSGI_LOGSTREAM_SOURCE", ROOT))
INSTALLED = os.environ.get("WSGI_LOGSTREAM_INSTALLED")
DEBIAN_PYTHON = Path("/usr/bin/python3")


def _source_files() -> list[str]:
    """The checkout's files (tracked, or new and not ignored), relative to it; what a copy of the tree holds."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(SOURCE), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise AssertionError(f"{SOURCE} must be a git checkout (git ls-files failed: {error})") from error
    return sorted(name for name in listed.decode().split("\0") if name and (SOURCE / name).is_file())


def _source_version() -> str:
    """``__version__`` as the source declares it, read without importing the package (which may be the wheel)."""
    tree = ast.parse((SOURCE / "wsgi_logstream" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError("wsgi_logstream/__init__.py has no __version__")


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(SOURCE / "setup.cfg", encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel and the sdist: those scripts/test built, else built here from the checkout."""
    given = os.environ.get("WSGI_LOGSTREAM_DIST")
    if given:
        directory = Path(given)
    else:
        # From a copy of what git would commit: a build in the checkout would also take files that a stale
        # *.egg-info/SOURCES.txt lists, and so pass where a clean checkout's build misses them.
        tree = tmp_path_factory.mktemp("source")
        _copy_tree(tree)
        directory = tmp_path_factory.mktemp("dist")
        built = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(directory), str(tree)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert built.returncode == 0, built.stdout + built.stderr
    wheels, sdists = sorted(directory.glob("*.whl")), sorted(directory.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist in {directory}"
    return wheels[0], sdists[0]


def test_every_file_of_the_package_is_in_the_wheel_and_the_sdist(dist: tuple[Path, Path]) -> None:
    """A file left out of the build (package data such as py.typed or the viewer's assets) breaks every install
    while an editable checkout passes; so each file under wsgi_logstream/ in git must be in both."""
    wheel, sdist = dist
    package = [name for name in _source_files() if name.startswith("wsgi_logstream/")]
    assert "wsgi_logstream/py.typed" in package
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {
        archive.name: [n for n in package if n not in names]
        for archive, names in ((wheel, in_wheel), (sdist, in_sdist))
    }
    assert missing == {wheel.name: [], sdist.name: []}, f"files missing (setup.cfg's package_data?): {missing}"


def test_the_wheel_names_the_tested_python_and_the_version_of_the_source(dist: tuple[Path, Path]) -> None:
    """python_requires, the classifiers, ruff's target and mypy's version all say the version the tests run on,
    and the version is the one __init__.py declares (setup.cfg reads it from there)."""
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    assert metadata["Version"] == _source_version()
    assert _setup_cfg()["metadata"]["version"] == "attr: wsgi_logstream.__version__"

    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    classified = [
        c.rsplit(" :: ", 1)[1]
        for c in metadata.get_all("Classifier", [])
        if re.fullmatch(r"[^:]+ :: Python :: 3\.\d+", c)
    ]
    assert running in classified, f"the tests run on {running}, which the classifiers {classified} do not name"
    lowest = min(classified, key=lambda version: tuple(map(int, version.split("."))))
    assert metadata["Requires-Python"] == f">={lowest}"
    assert _setup_cfg()["mypy"]["python_version"] == lowest
    ruff = tomllib.loads((SOURCE / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert ruff["target-version"] == "py" + lowest.replace(".", "")


def test_the_changelog_has_a_section_for_the_version_being_built() -> None:
    """The first release section is the version __init__.py is working towards (0.1.0 for 0.1.0.dev0)."""
    version = _source_version()
    release = re.match(r"\d+(\.\d+)*", version)
    assert release is not None, version
    sections = re.findall(r"^## (\S+)", (SOURCE / "CHANGELOG.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert sections and sections[0] == release.group(0), f"CHANGELOG.md's first section is {sections[:1]}"


def test_the_suite_imports_the_installed_wheel_not_the_checkout() -> None:
    """Under scripts/test, this process and the programs the tests start (PYTHONPATH and cwd as
    tests/servers.py sets them) import wsgi_logstream from the virtual environment's site-packages, installed
    from the wheel, not editable."""
    if INSTALLED != "wheel":
        pytest.skip("only under scripts/test, which sets WSGI_LOGSTREAM_INSTALLED=wheel")
    import importlib.metadata

    import wsgi_logstream

    assert not (ROOT / "wsgi_logstream").exists(), "the suite's tree must not hold the package"
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert sys.prefix != sys.base_prefix, "not in a virtual environment"
    assert Path(wsgi_logstream.__file__).resolve().is_relative_to(site_packages), wsgi_logstream.__file__
    direct_url = importlib.metadata.distribution("wsgi-logstream").read_text("direct_url.json")
    assert direct_url is not None and not json.loads(direct_url).get("dir_info", {}).get("editable")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.run(
        [sys.executable, "-c", "import wsgi_logstream; print(wsgi_logstream.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(child.stdout.strip()).resolve().is_relative_to(site_packages), child.stdout


# The docs ---------------------------------------------------------------------------------------------------------


def _sphinx(docs: Path, out: Path) -> subprocess.CompletedProcess[str]:
    try:
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        if INSTALLED:
            raise
        pytest.skip("the docs extra is not installed: pip install -e '.[docs]' (scripts/test installs it)")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(docs), str(out)],
        cwd=out.parent,  # python -m puts the working directory on sys.path: not the checkout
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_docs_build_with_warnings_as_errors_and_every_reference_checked(tmp_path: Path) -> None:
    built = _sphinx(ROOT / "docs", tmp_path / "html")
    assert built.returncode == 0, built.stdout + built.stderr
    guide = (tmp_path / "html" / "guide.html").read_text(encoding="utf-8")
    assert 'href="api.html#wsgi_logstream.logstream"' in guide  # the README's API names link to the reference


_BROKEN_README = """
Call `stream_everything(target)` first, as [the guide](docs/no-such-page.md) says.

### `logstream(target, **options)`, once more

| option | default | meaning |
| --- | --- | --- |
| `no_such_option` | `1` | nothing |

## The command line, once more

`--no-such-flag` and:

```sh
wsgi-logstream no-such-command app.log
```
"""


def test_a_readme_naming_a_function_page_option_or_command_that_does_not_exist_fails_the_docs_build(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "docs", tree / "docs")
    for name in ("README.md", "CHANGELOG.md", "setup.cfg"):
        shutil.copy(ROOT / name, tree / name)
    readme = tree / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + _BROKEN_README, encoding="utf-8")
    built = _sphinx(tree / "docs", tmp_path / "html")
    assert built.returncode != 0
    for named in (
        "wsgi_logstream.stream_everything",
        "no-such-page.md",
        "option no_such_option=1",
        "option --no-such-flag",
        "no command 'no-such-command'",
    ):
        assert named in built.stderr, built.stderr


# The README's first command ---------------------------------------------------------------------------------------


def _first_command_block(readme: str) -> str:
    match = re.search(r"^```(?:sh|bash|shell)\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert match is not None, "the README has no ```sh block"
    return match.group(1).strip()


def _copy_tree(destination: Path) -> None:
    for name in _source_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE / name, target)


@pytest.mark.servers
def test_the_readme_first_command_installs_and_serves_the_demo_with_debian_python(tmp_path: Path) -> None:
    """The README's first command block, read from the README, run by bash in a copy of the tree with Debian's
    python3 first on PATH (PEP 668 applies to it). The one change: ``--port 0`` is appended to the demo command
    it ends with, so the demo takes a free port (its default, 8000, may be taken) and prints the URL."""
    command = _first_command_block((SOURCE / "README.md").read_text(encoding="utf-8"))
    assert "\n" not in command and command.endswith("wsgi-logstream demo"), command
    assert DEBIAN_PYTHON.exists(), f"{DEBIAN_PYTHON} is missing: this test is about Debian's own Python"
    tree = tmp_path / "wsgi_logstream"
    _copy_tree(tree)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(["/usr/bin", "/bin", env.get("PATH", "")])
    output: list[str] = []
    found = threading.Event()
    proc = subprocess.Popen(
        ["bash", "-c", command + " --port 0"],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "the demo at http://" in line:
                found.set()

    reader = threading.Thread(target=read, name="readme-command-output")
    reader.start()
    try:
        # pip builds and installs the package first; the bound is for a slow index, not a guess at speed.
        wait_until(lambda: found.is_set() or proc.poll() is not None, 600, "the demo's URL")
        assert found.is_set(), "".join(output)
        url = re.search(r"the demo at (http://\S+)", "".join(output))
        assert url is not None
        home = (tree / ".venv" / "pyvenv.cfg").read_text(encoding="utf-8")
        assert re.search(r"^home = /usr/bin$", home, re.MULTILINE), home
        with urllib.request.urlopen(url.group(1), timeout=30) as page:
            assert page.status == 200
            assert "import?format=text" in page.read().decode()
        with urllib.request.urlopen(url.group(1) + "import?format=text&rows=3&delay=0", timeout=30) as stream:
            assert stream.headers["Content-Type"].startswith("text/plain")
            body = stream.read().decode()
        assert "row 3 imported" in body and "import finished: 3 rows" in body, body
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)  # the demo stops on Ctrl-C
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        reader.join(30)
        assert proc.stdout is not None
        proc.stdout.close()
