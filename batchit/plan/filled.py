"""Parameters a per-job placeholder fills (`format: "{ext}"`), checked once each job's value is known.

The config's load-time checks see such a parameter with a sample value, so a choice that depends on
the input passes there whatever the inputs turn out to be. Planning fills it per job; a value the
operator's parameter schema refuses (`gif` where `format` takes webp, avif, jpeg or png) is then a
config error naming the rule, the step and the input, before any job runs, rather than a traceback
or a quarantine in the middle of the build. Each distinct value is checked once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchit.config.steps import VALUE_KEYWORDS
from batchit.hashing import canonical_json
from batchit.model import Config, Rule, Step
from batchit.operators.base import Operator
from batchit.placeholders import PATH_PLACEHOLDERS, names_in_value
from batchit.plan.named import rule_error


class FilledParams:
    """The verdicts on parameter values filled per job, for one plan."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._verdicts: dict[tuple[int, str], str | None] = {}
        self._judged: dict[int, bool] = {}
        self._validators: dict[int, Any] = {}

    def check(
        self,
        rule: Rule,
        number: int,
        step: Step,
        operator: type[Operator],
        filled: Mapping[str, Any],
        input_name: str,
    ) -> None:
        """Raise a ConfigError when a parameter of step `number`, as filled for the job of input
        `input_name`, is a value the operator does not take."""
        properties: Mapping[str, Any] = operator.params_schema.get("properties", {})
        for name, written in step.params.items():
            schema = properties.get(name)
            if schema is None or not names_in_value(written) & PATH_PLACEHOLDERS:
                continue
            if id(schema) not in self._judged:
                self._judged[id(schema)] = _judges_content(schema)
            if not self._judged[id(schema)]:
                continue  # the load-time check held for every value (a `vars` of any text)
            value = filled.get(name)
            verdict = (id(schema), canonical_json(value))
            if verdict not in self._verdicts:
                self._verdicts[verdict] = self._problem(schema, value)
            problem = self._verdicts[verdict]
            if problem is not None:
                message = (
                    f"step {number} ({step.operator}): parameter '{name}' ({written!r}) is {value!r} "
                    f"for the input {input_name}: {problem}"
                )
                hint = "narrow the rule's inputs to files whose names give a value the step takes"
                raise rule_error(self.config, rule, message, hint, step)

    def _problem(self, schema: Mapping[str, Any], value: Any) -> str | None:
        """What is wrong with `value` under `schema`, or None; each schema's validator made once
        (the values of `{stem}` differ for every input)."""
        from jsonschema.exceptions import best_match  # imported only when a plan needs it

        from batchit.config.schema_errors import validator

        if id(schema) not in self._validators:
            self._validators[id(schema)] = validator(schema)
        error = best_match(self._validators[id(schema)].iter_errors(value))
        return None if error is None else error.message


def _judges_content(schema: Any) -> bool:
    """Whether `schema` holds a keyword that judges a string's content (the load-time check's
    sample value passed those only because they were set aside)."""
    if isinstance(schema, dict):
        return bool(VALUE_KEYWORDS & schema.keys()) or any(_judges_content(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_judges_content(item) for item in schema)
    return False
