"""Loading `batchit.yaml`: YAML 1.2 parsing, schema checks, presets and rules, into a `Config`.

`load_config` is the boundary (SPEC section 2): past it, code receives frozen records it can trust.
The other names here are the pieces other layers reuse: `parse_scalar` for `--flag` values,
`parse_size` for sizes, and `compile_condition` / `flags_read` for `when:` conditions (evaluating
one may raise `ConditionError`), and `sample_into` for `build --sample --out DIR`.
"""

from batchit.config.conditions import ConditionError, compile_condition, flags_read
from batchit.config.loader import load_config, sample_into
from batchit.config.units import parse_size
from batchit.config.yaml12 import parse_scalar

__all__ = [
    "ConditionError",
    "compile_condition",
    "flags_read",
    "load_config",
    "parse_scalar",
    "parse_size",
    "sample_into",
]
