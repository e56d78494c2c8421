"""Every setting of the model config is read by the package: a field that nothing reads is a
setting that silently does nothing.

The rule, checked on the source of ``pointsup/`` without running it: a field counts as read when
the code reads it as an attribute (or with ``getattr`` and a literal name) of an expression whose
type is known to be the field's section. Types are known from

* parameter annotations naming a section class (``config: MaskHeadConfig``, ``X | None`` too) and
  a section's constructor as a parameter's default (``PointRendConfig() if s is None else s``);
  anywhere else a constructor gives no type: ``RPNConfig().anchor_sizes`` reads a default, not
  a setting;
* attribute chains from a typed expression (``config.model.mask_head.pointrend`` with
  ``config: Config``), through local names assigned from them (``section = config.pointrend``,
  also in ``a if c else b`` and ``a or b``);
* ``self.x`` where a method assigned ``self.x`` from such an expression (``self.boxinst = boxinst``).

Only reads count: assigning or deleting ``config.name`` reads nothing. A bare ``.name`` on an expression of unknown type does not count, so a common name cannot hide an
unread field. Reads inside the modules that define the schema (its validation) do not count
either. A field read only through a route this analysis does not follow (a dict of fields, an
untyped parameter) fails the test: annotate the parameter with its section.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Any

from pointsup.engine.config import Config
from pointsup.modeling.config import ModelConfig
from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "pointsup"


def sections_of(root: type) -> dict[str, type]:
    """Class name -> class of every dataclass reachable from ``root`` through its fields (and
    their dataclass bases)."""
    found: dict[str, type] = {}
    pending = [root]
    while pending:
        schema = pending.pop()
        for klass in schema.__mro__:
            if dataclasses.is_dataclass(klass) and klass.__name__ not in found:
                found[klass.__name__] = klass
                pending += [t for t in typing.get_type_hints(klass).values() if dataclasses.is_dataclass(t)]
    return found


def leaf_fields(root: type) -> set[tuple[type, str]]:
    """(section class, field name) of every field of ``root``'s tree (``root`` and the types of its
    section fields, recursively) that is not itself a section."""
    leaves: set[tuple[type, str]] = set()
    hints = typing.get_type_hints(root)
    for f in dataclasses.fields(root):
        if dataclasses.is_dataclass(hints[f.name]):
            leaves |= leaf_fields(hints[f.name])
        else:
            leaves.add((root, f.name))
    return leaves


class ReadFinder:
    """Collects the (section class, field) pairs read in Python sources (see the module docstring)."""

    def __init__(self, sections: dict[str, type]):
        self.sections = sections
        self.reads: set[tuple[type, str]] = set()

    def section_of_annotation(self, node: ast.expr | None) -> type | None:
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node = ast.parse(node.value, mode="eval").body
        if isinstance(node, ast.BinOp):  # X | None
            return self.section_of_annotation(node.left) or self.section_of_annotation(node.right)
        if isinstance(node, ast.Subscript):  # Optional[X]
            return self.section_of_annotation(node.slice)
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        return self.sections.get(name) if name else None

    def field_type(self, section: type, name: str) -> type | None:
        if name not in {f.name for f in dataclasses.fields(section)}:
            return None
        self.reads.add((section, name))
        hint = typing.get_type_hints(section)[name]
        return hint if dataclasses.is_dataclass(hint) else None

    def default_section(self, node: ast.IfExp, env: dict[str, type], attributes: dict[str, type]) -> type | None:
        """The section of ``X() if s is None else s`` (a parameter's default instance), else None.

        Only there does a constructor call give a type: a field read from a default instance
        elsewhere (``RPNConfig().anchor_sizes``) reads no setting, so it must not count."""
        test, body = node.test, node.body
        if not (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Is)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value is None
            and isinstance(test.left, ast.Name)
            and isinstance(node.orelse, ast.Name)
            and node.orelse.id == test.left.id
        ):
            return None
        if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and not body.args and not body.keywords):
            return None
        section = self.sections.get(body.func.id)
        if section is None:
            return None
        return self.type_of(node.orelse, env, attributes) or section

    def type_of(self, node: ast.AST, env: dict[str, type], attributes: dict[str, type]) -> type | None:
        """The section class ``node`` evaluates to (None: unknown), recording the fields it reads."""
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in attributes:
                return attributes[node.attr]
            owner = self.type_of(node.value, env, attributes)
            return self.field_type(owner, node.attr) if owner is not None else None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
                owner, name = self.type_of(node.args[0], env, attributes), node.args[1]
                if owner is not None and isinstance(name, ast.Constant) and isinstance(name.value, str):
                    return self.field_type(owner, name.value)
                return None
            return None  # a section's constructor only counts in the default pattern (below)
        if isinstance(node, ast.IfExp):
            default = self.default_section(node, env, attributes)
            if default is not None:
                return default
            return self.type_of(node.body, env, attributes) or self.type_of(node.orelse, env, attributes)
        if isinstance(node, ast.BoolOp):
            return next((t for t in (self.type_of(v, env, attributes) for v in node.values) if t is not None), None)
        return None

    def visit_statements(
        self, body: list[ast.stmt], env: dict[str, type], attributes: dict[str, type], assigned: dict[str, type] | None = None
    ) -> None:
        for statement in body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.visit_function(statement, dict(env), attributes, assigned)
                continue
            if isinstance(statement, ast.ClassDef):
                self.visit_class(statement)
                continue
            for node in ast.walk(statement):  # every expression of this statement (nested bodies too)
                if isinstance(node, ast.Call) or (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)):
                    self.type_of(node, env, attributes)  # only reads: ``x.a = ...`` and ``del x.a`` read no ``a``
            if isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                value = self.type_of(statement.value, env, attributes) if statement.value is not None else None
                if isinstance(statement, ast.AnnAssign):
                    value = value or self.section_of_annotation(statement.annotation)
                for target in targets:
                    if isinstance(target, ast.Name) and value is not None:
                        env[target.id] = value
                    elif (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                        and value is not None
                        and assigned is not None
                    ):
                        assigned[target.attr] = value
            for field in ("body", "orelse", "finalbody", "handlers"):
                nested = getattr(statement, field, None)
                if isinstance(nested, list) and nested and isinstance(nested[0], (ast.stmt, ast.ExceptHandler)):
                    for part in nested:
                        self.visit_statements(
                            part.body if isinstance(part, ast.ExceptHandler) else [part], env, attributes, assigned
                        )

    def visit_function(
        self,
        function: ast.FunctionDef | ast.AsyncFunctionDef,
        env: dict[str, type],
        attributes: dict[str, type],
        assigned: dict[str, type] | None,
    ) -> None:
        arguments = function.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            section = self.section_of_annotation(argument.annotation)
            if section is not None:
                env[argument.arg] = section
            else:
                env.pop(argument.arg, None)
        self.visit_statements(function.body, env, attributes, assigned)

    def visit_class(self, klass: ast.ClassDef) -> None:
        attributes: dict[str, type] = {}
        for statement in klass.body:  # class-level annotations: ``boxinst: BoxInstConfig``
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                section = self.section_of_annotation(statement.annotation)
                if section is not None:
                    attributes[statement.target.id] = section
        for _ in range(2):  # first the attributes the methods assign, then the reads with them known
            for statement in klass.body:
                if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.visit_function(statement, {}, attributes, attributes)

    def visit_source(self, source: str) -> None:
        self.visit_statements(ast.parse(source).body, {}, {})


def schema_modules(sections: dict[str, type]) -> set[Path]:
    return {Path(typing.cast(Any, __import__("sys").modules[k.__module__]).__file__).resolve() for k in sections.values()}


def unread_model_fields() -> list[str]:
    sections = sections_of(Config)
    finder = ReadFinder(sections)
    skipped = schema_modules(sections)
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.resolve() not in skipped:
            finder.visit_source(path.read_text(encoding="utf-8"))
    unread = []
    for klass, name in sorted(leaf_fields(ModelConfig), key=lambda pair: (pair[0].__name__, pair[1])):
        if not any((base, name) in finder.reads for base in klass.__mro__):
            unread.append(f"{klass.__name__}.{name}")
    return unread


def test_every_model_config_field_is_read_by_the_package() -> None:
    assert unread_model_fields() == []


@dataclasses.dataclass
class Inner:
    name: str = "x"
    size: int = 1
    hidden: int = 2


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    flag: bool = False
    unused: int = 0
    via_self: int = 0


def test_the_rule_counts_typed_reads_only() -> None:
    source = """
def build(outer: Outer, other) -> None:
    section = outer.inner
    use(section.name, other.unused, other.hidden)
    use(getattr(outer, "flag"))

class Holder:
    def __init__(self, settings: "Outer | None" = None):
        self.settings = Outer() if settings is None else settings

    def later(self):
        return self.settings.via_self + (self.settings.inner.size if x else 0)

def writes_only(outer: Outer) -> None:
    outer.unused = 1  # written, not read
    del outer.inner.hidden
    DEFAULT = Outer().unused + Inner().hidden  # a default instance's value reads no setting
    fallback = Outer() if flag else untyped  # not the default pattern: no type from the constructor
    fallback.unused
"""
    finder = ReadFinder({"Inner": Inner, "Outer": Outer})
    finder.visit_source(source)
    assert finder.reads == {(Outer, "inner"), (Inner, "name"), (Outer, "flag"), (Outer, "via_self"), (Inner, "size")}
    assert {(k.__name__, n) for k, n in leaf_fields(Outer) if (k, n) not in finder.reads} == {
        ("Outer", "unused"),
        ("Inner", "hidden"),
    }
