"""The modules' documentation agrees with what they accept, as validate-modules checks it.

ansible-test's validate-modules (in `make lint`, scripts/sanity.py) needs packages the
project's .venv does not have, so on such a machine it is skipped. These tests check its
main rules on the documentation as ansible-doc merges it (fragments included): every option
a module's argument spec accepts is documented with the same type, elements, default,
choices, aliases and required flag (and nothing else is), the module names an author in
the form validate-modules accepts, every attribute has a description and a support level,
the examples and return values are valid YAML with a description and type per value, and
no import stands above the documentation.
Every plugin the collection keeps also says why the library's piece is not enough (issue 26,
item 2): a module or callback names it under ``seealso``, a filter in its docstring's
paragraph 'Why not the library:'.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils import basic
from ansible.plugins.loader import fragment_loader, init_plugin_loader
from ansible.utils.plugin_docs import get_docstring
from plugin_files import load_plugin

ROOT = Path(__file__).resolve().parents[1]
init_plugin_loader([str(ROOT)])  # the fragments ansible.builtin.* (and this collection's, by name)
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
# validate-modules' form of an author line: a name and a GitHub handle, or !UNKNOWN.
AUTHOR = re.compile(r"^\w.*(\(@[\w-]+\)|!UNKNOWN)(?![\w.])")
SUPPORT = {"full", "partial", "none", "N/A"}
# Every plugin the collection keeps says why the library piece is not enough (issue 26: the
# ones it was enough for, local_fact, nvidia_smi_list_gpus and the gpu_serving filters, are
# gone from plugins/).
NO_LIBRARY_NOTE: set[str] = set()
# The library piece each kept plugin names (a collection name, or ansible.builtin's).
LIBRARY = re.compile(r"\b(ansible\.builtin|community\.[a-z_]+|ansible\.posix)\.[a-z0-9_]+\b")


class SpecCaptured(Exception):
    def __init__(self, spec: dict[str, Any], file_args: bool) -> None:
        super().__init__("argument spec captured")
        self.spec = spec
        self.file_args = file_args


def argument_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The argument spec the module's main() hands AnsibleModule (file options included), or
    for a module that is only documentation, its action's ARGUMENT_SPEC."""
    if not hasattr(load_plugin("modules", name, f"docs_{name}"), "main"):
        return load_plugin("action", name, f"docs_action_{name}").ARGUMENT_SPEC

    def capture(self: Any, argument_spec: dict[str, Any], **kwargs: Any) -> None:
        raise SpecCaptured(argument_spec, bool(kwargs.get("add_file_common_args")))

    monkeypatch.setattr(basic.AnsibleModule, "__init__", capture)
    module = load_plugin("modules", name, f"docs_{name}")
    with pytest.raises(SpecCaptured) as captured:
        module.main()
    spec = dict(captured.value.spec)
    if captured.value.file_args:
        for option, default in basic.FILE_COMMON_ARGUMENTS.items():
            spec.setdefault(option, default)
    return spec


def documentation(kind: str, name: str) -> tuple[dict[str, Any], str | None, Any]:
    """(DOCUMENTATION with its fragments merged, EXAMPLES, RETURN) as ansible-doc reads them."""
    path = ROOT / "plugins" / kind / f"{name}.py"
    doc, examples, returns, _ = get_docstring(
        str(path),
        fragment_loader,
        collection_name="tfserving.fleet",
        is_module=kind == "modules",
        plugin_type=None if kind == "modules" else kind.rstrip("s"),
    )
    return doc, examples, returns


def disagreements(spec: dict[str, Any], options: dict[str, Any], where: str) -> list[str]:
    """What differs between an argument spec and its documented options, recursively."""
    problems = []
    for option in sorted(set(spec) - set(options)):
        problems.append(f"{where}{option}: accepted but not documented")
    for option in sorted(set(options) - set(spec)):
        problems.append(f"{where}{option}: documented but not accepted")
    for option in sorted(set(spec) & set(options)):
        accepted, documented = spec[option] or {}, options[option] or {}
        label = f"{where}{option}"
        if not documented.get("description"):
            problems.append(f"{label}: no description")
        accepted_type = accepted.get("type", "str")
        if documented.get("type", "str") != accepted_type:
            problems.append(
                f"{label}: type {documented.get('type')} documented, {accepted_type} accepted"
            )
        for key in ("elements", "choices", "aliases"):
            if (documented.get(key) or None) != (accepted.get(key) or None):
                problems.append(f"{label}: {key} {documented.get(key)} != {accepted.get(key)}")
        if bool(documented.get("required")) != bool(accepted.get("required")):
            problems.append(f"{label}: required differs")
        if documented.get("default") != accepted.get("default") and not (
            accepted_type == "bool"
            and not accepted.get("default")
            and not documented.get("default")
        ):
            problems.append(
                f"{label}: default {documented.get('default')!r} documented,"
                f" {accepted.get('default')!r} accepted"
            )
        if accepted.get("options") or documented.get("suboptions"):
            problems += disagreements(
                accepted.get("options") or {}, documented.get("suboptions") or {}, f"{label}."
            )
    return problems


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_are_the_accepted_ones(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, _, _ = documentation("modules", name)
    spec = argument_spec(name, monkeypatch)
    assert disagreements(spec, doc.get("options") or {}, "") == []


@pytest.mark.parametrize("name", MODULES)
def test_module_has_author_attributes_examples_and_returns(name: str) -> None:
    doc, examples, returns = documentation("modules", name)
    assert doc["module"] == name
    assert doc.get("short_description") and doc.get("description")
    authors = doc.get("author")
    assert authors, "no author"
    for line in [authors] if isinstance(authors, str) else authors:
        assert AUTHOR.search(line), f"author {line!r}: a name, then (@handle) or (!UNKNOWN)"
    assert doc.get("attributes"), "no attributes"
    for attribute, value in doc["attributes"].items():
        assert value.get("description"), f"attribute {attribute}: no description"
        assert value.get("support") in SUPPORT, f"attribute {attribute}: support"
    if "platform" in doc["attributes"]:
        assert doc["attributes"]["platform"].get("platforms"), "attribute platform: platforms"
    assert isinstance(yaml.safe_load(examples), list)
    assert returns, "no RETURN"
    for key, value in returns.items():
        for field in ("description", "returned", "type"):
            assert value.get(field), f"return value {key}: no {field}"


@pytest.mark.parametrize(
    "path",
    [f"modules/{name}.py" for name in MODULES] + ["callback/progress.py"],
)
def test_imports_come_after_the_documentation(path: str) -> None:
    """validate-modules: no import but __future__ above DOCUMENTATION, EXAMPLES and RETURN;
    a module with code starts with the interpreter line Ansible rewrites."""
    text = (ROOT / "plugins" / path).read_text()
    body = ast.parse(text).body
    docs = [
        node.lineno
        for node in body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", "") in ("DOCUMENTATION", "EXAMPLES", "RETURN")
    ]
    early = [
        node.lineno
        for node in body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        and getattr(node, "module", "") != "__future__"
        and node.lineno < min(docs)
    ]
    assert early == [], f"imports above the documentation, lines {early}"
    if path.startswith("modules/") and any(isinstance(n, ast.FunctionDef) for n in body):
        assert text.startswith("#!/usr/bin/python\n")


@pytest.mark.parametrize("name", [n for n in MODULES if n not in NO_LIBRARY_NOTE])
def test_kept_module_names_the_library_piece_it_beats(name: str) -> None:
    doc, _, _ = documentation("modules", name)
    seealso = doc.get("seealso") or []
    named = [s.get("module") or s.get("plugin") for s in seealso if s.get("description")]
    assert [n for n in named if n and not n.startswith("tfserving.fleet.")], (
        "seealso names no library module or plugin, with why it is not enough"
    )


def test_callback_names_the_library_piece_it_beats() -> None:
    doc, _, _ = documentation("callback", "progress")
    assert doc.get("seealso") and all(s.get("description") for s in doc["seealso"])


@pytest.mark.parametrize(
    "name",
    sorted(
        p.stem for p in (ROOT / "plugins" / "filter").glob("*.py") if p.stem not in NO_LIBRARY_NOTE
    ),
)
def test_kept_filter_names_the_library_piece_it_beats(name: str) -> None:
    text = (ROOT / "plugins" / "filter" / f"{name}.py").read_text()
    docstring = ast.get_docstring(ast.parse(text)) or ""
    why = [p for p in docstring.split("\n\n") if p.startswith("Why not the library:")]
    assert why, "the docstring has no paragraph 'Why not the library: ...'"
    assert LIBRARY.search(why[0]), "the paragraph names no library piece"
