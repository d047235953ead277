"""Translation tables: how a foreign library's exceptions become errors of ours, one table per library.

A table maps an exception type to a :data:`Rule`; :func:`rule_for` picks the row of the most specific type the
exception is an instance of (its method resolution order decides, so rows need no particular order). A rule is a
:class:`Translation` (our error class, a message template, a remedy, a cause, the details to copy) or, where the
answer depends on the exception (an HTTP status, an errno), a function choosing one. Each module that meets a
foreign library (docker-py in ``runtimes/docker/adapter.py``, huggingface_hub in ``runtimes/transfer/hf_access.py``)
owns its table and looks it up in one place.

Templates are :meth:`str.format` templates over a context the translator builds; context values are substituted,
never parsed, so a message from the library (already redacted by the translator) cannot inject fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from nemoclaw_runtime.kernel.errors import NemoclawError

Context: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True)
class Translation:
    """One row of a table: raise ``error`` with ``message`` and ``remedy`` filled from the context."""

    error: type[NemoclawError]
    message: str
    remedy: str | None = None  # None: the error class's default remedy
    cause: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)  # detail name -> context key (the raw value is copied)

    def build(self, context: Context, extra_details: Mapping[str, Any] | None = None) -> NemoclawError:
        details = {name: context[key] for name, key in self.details.items()}
        details.update(extra_details or {})
        return self.error(self.message.format_map(context),
                          remedy=self.remedy.format_map(context) if self.remedy is not None else None,
                          cause=self.cause, details=details)


#: A row's value: a fixed translation, or a function of the exception and the context that picks one (or returns a
#: finished error of ours).
Rule: TypeAlias = Translation | Callable[[BaseException, Context], Translation | NemoclawError]
_R = TypeVar("_R")


def rule_for(table: Mapping[type[BaseException], _R], exc: BaseException) -> _R | None:
    """The row for the most specific type in ``table`` that ``exc`` is an instance of; ``None`` when none is."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def translate(table: Mapping[type[BaseException], Rule], exc: BaseException, context: Context, *,
              default: Rule | None = None, extra_details: Mapping[str, Any] | None = None) -> NemoclawError | None:
    """Our error for ``exc`` by ``table`` (``default`` when no row matches); ``None`` when neither applies.

    ``extra_details`` are added to the details of an error built from a :class:`Translation`.
    """
    rule = rule_for(table, exc) or default
    if rule is None:
        return None
    picked = rule if isinstance(rule, Translation) else rule(exc, context)
    return picked.build(context, extra_details) if isinstance(picked, Translation) else picked


__all__ = ["Context", "Rule", "Translation", "rule_for", "translate"]
