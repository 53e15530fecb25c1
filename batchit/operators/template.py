"""`template.render`: a Jinja2 template over the job's value, recording every template it loads.

Templates are named by their project-relative path. Each job gets its own environment, so a template
compiled for one job is never reused unchecked by the next, and the loader sees every load: the
templates a page extends, includes or imports are reported as discovered dependencies, and a change to
any of them makes the job stale (SPEC section 3).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import jinja2
from jinja2.loaders import split_template_path

from batchit.errors import JobError, RecipeError
from batchit.operators.base import InputFile, JobContext, Operator, UpstreamSource, as_text
from batchit.placeholders import path_values

AUTOESCAPE_EXTENSIONS = tuple(
    f"{kind}{suffix}" for kind in ("html", "htm", "xml") for suffix in ("", ".j2", ".jinja", ".jinja2")
)
"""Template names ending in these are autoescaped. `select_autoescape` matches name endings, so
`page.html.j2` needs `html.j2` listed: `html` alone only matches names ending in `.html`."""

BUILTIN_VARIABLES = ("content", "items", "input", "output", "rule", "params", "relroot")
"""The names `template.render` defines itself; `vars` may not shadow them."""


@dataclass(frozen=True)
class TemplateItem:
    """One input of an aggregate job, as its template sees it: paths for links, content on demand."""

    file: InputFile
    url: str
    """The input's path relative to the output's directory (POSIX), percent-encoded, ready for `href`,
    `src` and `srcset` (where a space or a comma would split the list)."""
    origin: UpstreamSource | None = None
    """The job of another rule that produced this input, if one did."""
    on_read: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def source(self) -> str:
        """The file this input was made from by another rule (its own path otherwise).

        Looking at it records the source as read, so moving it makes the page stale."""
        if self.origin is None or len(self.origin.inputs) != 1:
            return self.file.path
        if self.on_read is not None:
            self.on_read(self.origin.inputs[0])
        return self.origin.inputs[0]

    @property
    def matrix(self) -> Mapping[str, Any]:
        """The matrix values of the job that produced this input (`{"width": 320}`), else empty."""
        return self.origin.matrix if self.origin is not None else {}

    @property
    def path(self) -> str:
        """Project-relative path."""
        return self.file.path

    @property
    def name(self) -> str:
        """File name with its extension (`a.b.jpg`)."""
        return path_values(self.file.path)["name"]

    @property
    def stem(self) -> str:
        """File name without its last extension (`a.b`)."""
        return path_values(self.file.path)["stem"]

    @property
    def ext(self) -> str:
        """The last extension, without the dot (`jpg`)."""
        return path_values(self.file.path)["ext"]

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self.file.absolute.stat().st_size

    @property
    def text(self) -> str:
        """The content as UTF-8 text, read when the template asks for it."""
        return self.file.read_text()


class _RecordingLoader(jinja2.FileSystemLoader):
    """A loader rooted at the project that notes every template it loads on the job's context."""

    def __init__(self, ctx: JobContext, top: str) -> None:
        super().__init__(str(ctx.root), encoding="utf-8")
        self.ctx = ctx
        self.top = "/".join(split_template_path(top))
        """The step's own `template`: a parameter file, already in the key before the job runs, so
        not a discovered dependency (which would change the key the job ran under)."""
        self.names: dict[str, str] = {}
        """Project-relative template name by the file name Jinja2 puts in tracebacks."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        """The template's source, after recording its normalised name as read by the job.

        A missing template is recorded too: for `{% include ... ignore missing %}`, creating it later
        must make the job stale.
        """
        name = "/".join(split_template_path(template))
        if name != self.top:
            self.ctx.note_read(name)
        source, filename, uptodate = super().get_source(environment, template)
        if name != self.top:
            self.ctx.note_read(name, source.encode("utf-8"))  # what was read, as the loader decoded it
        self.names[filename] = name
        return source, filename, uptodate


class TemplateRender(Operator):
    """`template.render`: render a Jinja2 template; the result is the job's text.

    Variables: `content` (the value as text) for a one-input job, or `items` (a `TemplateItem` per
    input, in the job's order) for an aggregate; `input`, `output` (relative to `out`), `rule`,
    `relroot` (`../` per directory level of the output, so `{{ relroot }}index.html` links to the top
    of `out`), and the entries of `vars`, also available together as `params`. An undefined variable
    is an error, not an empty string, and HTML/XML templates are autoescaped.
    """

    name = "template.render"
    version = "2"  # 2: `items[].url` percent-encoded; the template itself is not a discovered dependency
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Render a Jinja2 template with the job's content (or an aggregate's items).",
        "properties": {
            "template": {
                "type": "string",
                "minLength": 1,
                "description": (
                    "Project-relative path of the Jinja2 template. Names ending in .html, .htm, .xml "
                    "(optionally followed by .j2, .jinja or .jinja2) are autoescaped. Its content, and "
                    "that of every template it extends, includes or imports, is part of the job's key."
                ),
            },
            "vars": {
                "type": "object",
                "propertyNames": {"not": {"enum": list(BUILTIN_VARIABLES)}},
                "description": (
                    "Extra template variables, passed as they are; also available together as `params`. "
                    f"May not redefine {', '.join(BUILTIN_VARIABLES)}."
                ),
            },
        },
        "required": ["template"],
        "additionalProperties": False,
    }
    file_params = ("template",)
    path_aware = True

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The rendered template, as text."""
        template: str = params["template"]
        extra: Mapping[str, Any] = params.get("vars", {})
        loader = _RecordingLoader(ctx, template)
        env = jinja2.Environment(
            loader=loader,
            autoescape=jinja2.select_autoescape(AUTOESCAPE_EXTENSIONS, default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        variables = {**extra, **self._variables(value, ctx), "params": dict(extra)}
        try:
            return env.get_template(template).render(variables)
        except (jinja2.TemplateError, UnicodeDecodeError) as exc:
            raise _job_error(exc, loader, template) from exc
        except RecursionError:  # Jinja2 does not stop a template that includes itself
            raise RecipeError(
                f"{template}: templates extend, include, import or call one another without end",
                hint="break the loop: a template must not load itself, directly or through others",
            ) from None
        except JobError:
            raise
        except Exception as exc:  # an expression failed (`{{ total // count }}`): as Jinja2's own errors
            where = _location(exc, loader) or template
            raise RecipeError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def _variables(self, value: Any, ctx: JobContext) -> dict[str, Any]:
        """The variables describing the job: its content or items, and where it reads and writes."""
        variables: dict[str, Any] = {
            "input": ctx.input,
            "output": ctx.output,
            "rule": ctx.rule,
            "relroot": "../" * ctx.output.count("/"),
        }
        if not isinstance(value, list):
            return {**variables, "content": as_text(value, self.name)}
        if not all(isinstance(item, InputFile) for item in value):
            raise RecipeError(f"step {self.name} takes an aggregate's input files, not a transformed list")
        here = posixpath.join(ctx.out, posixpath.dirname(ctx.output))
        items = [
            TemplateItem(
                item, quote(posixpath.relpath(item.path, here)), ctx.sources.get(item.path), ctx.note_read
            )
            for item in value
        ]
        return {**variables, "items": items}


def _job_error(
    exc: jinja2.TemplateError | UnicodeDecodeError, loader: _RecordingLoader, template: str
) -> RecipeError:
    """The error for a template that cannot render, naming the template and line at fault: the
    template is the rule's recipe, so the input is not quarantined for it."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return RecipeError(f"{exc.name or template}:{exc.lineno}: template syntax error: {exc.message}")
    where = _location(exc, loader)
    if isinstance(exc, jinja2.TemplateNotFound):
        return RecipeError(
            f"template {exc.name} not found under the project root"
            + (f" (loaded from {where})" if where else ""),
            hint="template names are paths relative to the project root, like templates/page.html",
        )
    if isinstance(exc, UnicodeDecodeError):
        return RecipeError(f"a template loaded by {template} is not valid UTF-8: {exc}")
    return RecipeError(f"{where or template}: {exc.message}")


def _location(exc: BaseException, loader: _RecordingLoader) -> str | None:
    """`template:line` of the innermost template frame in the traceback, if a template was running.

    Jinja2 rewrites tracebacks so that template code appears as frames of the template's file, at the
    template's line; the loader knows which project-relative name each file was loaded as.
    """
    where = None
    tb = exc.__traceback__
    while tb is not None:
        name = loader.names.get(tb.tb_frame.f_code.co_filename)
        if name is not None:
            where = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
