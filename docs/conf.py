"""Sphinx configuration: the API reference from the docstrings, the README and docs/*.md as guide pages.

The tests build it (tests/test_release.py) as anyone can::

    sphinx-build -W --keep-going -n -b html docs build/docs

with warnings as errors and every reference checked (``-n``): a docstring's ``:func:`` or ``:class:`` that names
nothing, a Markdown link to a page that does not exist, or a README mention of an API function, a
``logstream()`` option or a ``wsgi-logstream`` command or option that does not exist fails the build (see
:func:`_check_readme`). autodoc imports the installed ``wsgi_logstream`` (the wheel under scripts/test), so the
reference documents what users get.

How the README becomes the guide page (``guide``, see :func:`_readme_as_guide`): its links into ``docs/`` and to
``CHANGELOG.md`` are pointed at the pages built from those files, and each inline code span that calls a name
(```logstream(target)```, ```wsgi_logstream.bind(fn)```) or names an exported one (```JobsApp```) becomes a
reference to ``wsgi_logstream.<name>``, so it links, and fails when the name is gone. Call-shaped spans that are not
the API (```close()```) are listed in ``NOT_API``.

The optional integrations page (``extras``) is written here too (:func:`_extras_page`): one section per extra
declared in setup.cfg, with the autodoc of its module. A new integration needs no change here: declare the extra
in setup.cfg and add its module ``wsgi_logstream.<extra>`` (a module of another name goes in ``EXTRA_MODULES``).
An extra without a module, or a module that does not import, fails the build.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from sphinx.util import logging as sphinx_logging

import wsgi_logstream

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "wsgi_logstream"
author = "wsgi_logstream contributors"
copyright = "wsgi_logstream contributors, MIT License"
version = release = wsgi_logstream.__version__

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Nitpicky builds (-n) fail on every reference that does not resolve. The standard library and typeshed's WSGI
# types are not documented here (intersphinx would need the network, which CI does not have), and private names
# (a TypeVar ``_T``) have no page: those are the only names let through.
_stdlib = "|".join(sorted(sys.stdlib_module_names | {"_typeshed"}))
nitpick_ignore_regex = [
    (r"py:.*", rf"({_stdlib})(\..*)?"),
    (r"py:.*", r"(WSGIApplication|WSGIEnvironment|StartResponse|Callable|Iterable|Iterator|Mapping|Sequence|Any)"),
    (r"py:.*", r"(.*\.)?_\w+"),
    # A union written as a string in a forward reference ("JobRecord | None" inside Callable[...]) reaches Sphinx
    # as one name it cannot split.
    (r"py:class", r".+ \| .+"),
    # Internal objects in the constructors of classes that applications get from a function and never build:
    # LogStreamApp and JobsApp (from logstream() and jobs()), JobHandle (from JobsApp.start()).
    (r"py:class", r"wsgi_logstream\.(options\.Options|options\.JobsSettings|operation\.Operation|handle\.Jobs)"),
    # Internal modules the reference does not document page by page (docs/design.md describes them), named in the
    # docstrings of documented ones, and the module constants those docstrings point at.
    (r"py:.*", r"wsgi_logstream\.(capture|channel|command|formats|response|pipeline|request|filters|carriage)(\..*)?"),
    (r"py:data", r"[A-Z][A-Z0-9_]+"),
    # The integrations' annotations name their framework's types by their short names (imported for type
    # checking only), and their own aliases and type variables.
    (
        r"py:class",
        r"(HttpRequest|HttpResponseBase|QuerySet|View|URLPattern|Blueprint|Flask|Response|Celery|Task|Queue|Redis"
        r"|DjangoAuthorize|FlaskAuthorize|(wsgi_logstream\.\w+\.)?F)",
    ),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# Markdown: headings are link targets (the README links its own sections).
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"wsgi_logstream {release}"

# Extras that are for working on the project, not integrations a user installs.
DEVELOPMENT_EXTRAS = {"test", "docs", "bench"}
# An integration whose module is not named ``wsgi_logstream.<extra>``.
EXTRA_MODULES: dict[str, str] = {}
# Call-shaped code in the README that is not wsgi_logstream's API: the WSGI iterable's close(), the user's own
# target, the selectors a server uses.
# The hooks an application writes (authorize, owner, form_fields) and the frameworks' own functions the README
# shows beside ours (Django's permission_required, Flask's abort).
NOT_API = {
    "close",
    "target",
    "select",
    "poll",
    "authorize",
    "owner",
    "form_fields",
    "permission_required",
    "abort",
    "path",  # Django's, in a urlpatterns example
}


def _extras() -> dict[str, list[str]]:
    """The extras setup.cfg declares, with their requirements."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = config["options.extras_require"] if config.has_section("options.extras_require") else {}
    return {name: value.split() for name, value in declared.items()}


# Modules of integrations whose third-party package is not installed where the docs are built are imported with
# that package mocked, so the reference does not need every integration's dependencies.
_integration_packages = {
    re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("-", "_")
    for name, requirements in _extras().items()
    if name not in DEVELOPMENT_EXTRAS
    for requirement in requirements
}
autodoc_mock_imports = sorted(name for name in _integration_packages if importlib.util.find_spec(name) is None)
# Their types (redis.Redis) are documented by their own projects.
if _integration_packages:
    nitpick_ignore_regex.append((r"py:.*", rf"({'|'.join(sorted(_integration_packages))})(\..*)?"))


def _extras_page() -> str:
    """The body of the extras page: the extras setup.cfg declares, each with its module's reference."""
    lines = [
        "The core needs nothing beyond Python's standard library. Each integration is an extra that brings its own",
        "dependencies, and a module of its own that imports them; nothing else imports that module.",
        "",
    ]
    integrations = {name: reqs for name, reqs in _extras().items() if name not in DEVELOPMENT_EXTRAS}
    if not integrations:
        lines.append("This version has no integration extras.")
    for name, requirements in sorted(integrations.items()):
        module = EXTRA_MODULES.get(name, f"wsgi_logstream.{name}")
        lines += [
            f"## `[{name}]`: `{module}`",
            "",
            "```sh",
            f"pip install 'wsgi-logstream[{name}]'",
            "```",
            "",
            f"Installs {', '.join(f'`{r}`' for r in requirements)}.",
            "",
            "```{eval-rst}",
            f".. automodule:: {module}",
            "   :members:",
            # CeleryRunner and RQRunner get submit() and start() from a private base: shown on each.
            "   :inherited-members:",
            "```",
            "",
        ]
    lines += [
        "## For working on the project",
        "",
        "`[test]` installs what the tests run (servers, clients, ruff and mypy, build and twine); `[docs]` what",
        "builds these pages; `[bench]` what the benchmarks plot with.",
        "",
    ]
    return "\n".join(lines)


# Inline code in the README, as Markdown writes it: `...` (not inside a fenced block; see _readme_as_guide).
_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_QUALIFIED = re.compile(r"wsgi_logstream\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\(.*\))?")
_CALL = re.compile(r"([A-Za-z_]\w*)\(.*\)")


def _reference(code: str) -> str | None:
    """The API name a README code span refers to, or None when it is not a reference to the API."""
    match = _QUALIFIED.fullmatch(code)
    if match:
        return f"wsgi_logstream.{match.group(1)}"
    match = _CALL.fullmatch(code)
    if match and match.group(1) not in NOT_API:
        name = match.group(1)
        if name not in wsgi_logstream.__all__:
            # A function of an integration (urls() of wsgi_logstream.django) is written by its bare name in the
            # section about that integration.
            for module, names in _integration_functions().items():
                if name in names:
                    return f"wsgi_logstream.{module}.{name}"
        return f"wsgi_logstream.{name}"
    if code in wsgi_logstream.__all__:
        return f"wsgi_logstream.{code}"
    return None


def _integration_functions() -> dict[str, set[str]]:
    """The public top-level names of each integration module, read from its source (nothing imported)."""
    found: dict[str, set[str]] = {}
    # The package as imported: under scripts/test the tree being documented has no wsgi_logstream/ (the wheel is).
    for path in sorted(Path(wsgi_logstream.__file__).resolve().parent.glob("*.py")):
        if path.stem not in _extras():
            continue
        tree = ast.parse(path.read_text())
        found[path.stem] = {
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
        }
    return found


def _link_api(line: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        target = _reference(code)
        if target is None:
            return match.group(0)
        # A role's title cannot hold "<" or a backtick; such a span keeps its text and links by its bare name.
        if "<" in code or "|" in code:
            return f"{{py:obj}}`{target}`"
        return f"{{py:obj}}`{code} <{target}>`"

    return _CODE.sub(replace, line)


def _readme_as_guide() -> str:
    """The README as the guide page: links pointed at the built pages, API names made into references."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = ["# Guide"]
    fenced = False
    for line in text.splitlines()[1:]:  # its own title is the site's
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            line = line.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
            if not line.startswith("#"):  # headings keep their text, so their anchors do not move
                line = _link_api(line)
        out.append(line)
    return "\n".join(out) + "\n"


def _help(*command: str) -> str:
    """``wsgi-logstream [COMMAND] --help``: the command line as users see it."""
    args = [sys.executable, "-m", "wsgi_logstream", *command, "--help"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT.parent, check=False)
    return done.stdout if done.returncode == 0 else ""


def _check_readme(app: Any) -> None:
    """Warn (so fail, with -W) where the README names an option or a command that does not exist.

    - Each row of an ``| option | default | meaning |`` table under a heading that names an API function
      (``### `logstream(target, **options)```): the function must accept that option with the documented default
      (a code span, evaluated with ``logging`` in scope; a default in words means ``None``).
    - Each ``wsgi-logstream COMMAND ...`` line in a code block: COMMAND must exist and its options must be among
      those ``wsgi-logstream COMMAND --help`` lists; each code span starting with ``-`` in the section
      "The command line" must be an option of one of the commands.
    """
    log = sphinx_logging.getLogger(__name__)
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    commands = re.findall(r"^    (\w+)\s{2,}", _help(), re.MULTILINE)
    if not commands:
        log.warning("wsgi-logstream --help lists no commands", location=f"{readme}:1")
    options = {command: set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", _help(command))) for command in commands}
    every_option = set().union(*options.values()) if options else set()

    function = None
    in_table = fenced = False
    section = ""
    for number, line in enumerate(lines, start=1):
        where = f"{readme}:{number}"
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            words = shlex.split(line.split(" #", 1)[0], posix=True) if "wsgi-logstream " in line else []
            if words and words[0].endswith("wsgi-logstream") and len(words) > 1:
                command, rest = words[1], words[2:]
                if command not in options:
                    log.warning(f"wsgi-logstream has no command {command!r}", location=where)
                    continue
                for word in rest[: rest.index("--")] if "--" in rest else rest:
                    flag = word.split("=", 1)[0]
                    if flag.startswith("-") and flag not in options[command]:
                        log.warning(f"wsgi-logstream {command} has no option {flag}", location=where)
            continue
        if line.startswith("#"):
            section = line if line.startswith("## ") else section
            call = re.search(r"`([A-Za-z_]\w*)\(", line)
            function = call.group(1) if call else None
            in_table = False
            continue
        if re.fullmatch(r"\|\s*option\s*\|\s*default\s*\|.*", line):
            in_table = True
            continue
        if in_table and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if set(cells[0]) <= set("- ") or function is None:
                continue
            name = cells[0].strip("`")
            default = cells[1][1:-1] if cells[1].startswith("`") and cells[1].endswith("`") else "None"
            try:
                getattr(wsgi_logstream, function)(lambda: None, **{name: eval(default, {"logging": logging})})
            except Exception as error:  # the build's warning says which option and why
                log.warning(f"{function}() does not take option {name}={default}: {error}", location=where)
            continue
        in_table = False
        if section.startswith("## The command line"):
            for span in _CODE.findall(line):
                flag = span.split()[0].split("=", 1)[0]
                if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and flag not in every_option:
                    log.warning(f"no wsgi-logstream command has an option {flag}", location=where)


def _generate(app: Any, docname: str, source: list[str]) -> None:
    if docname == "guide":
        source[0] = _readme_as_guide()
    elif docname == "extras":
        source[0] = source[0] + "\n" + _extras_page()


def _unqualified(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a name the source spells shorter than its documented path: ``Job`` in a type hint imported under
    TYPE_CHECKING, ``JobsApp.start`` for what is documented as ``wsgi_logstream.JobsApp.start``. Only when exactly
    one documented object of the package ends with that name; anything else stays unresolved, and fails the build.
    """
    target = node.get("reftarget", "").lstrip("~.")
    if node.get("refdomain") != "py" or not target:
        return None
    domain = env.get_domain("py")
    matches = [name for name in domain.objects if name.startswith("wsgi_logstream.") and name.endswith("." + target)]
    if len(matches) != 1:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", matches[0], node, contnode)


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _generate)
    app.connect("missing-reference", _unqualified)
    app.connect("builder-inited", _check_readme)
    return {"parallel_read_safe": True}
