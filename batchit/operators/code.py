"""Operators that run the user's own code: a Python function (`python`) or a command (`shell`)."""

from __future__ import annotations

import copy
import functools
import inspect
import os
import signal
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from batchit.errors import PermanentError, RecipeError, TransientError
from batchit.operators.base import InputFile, JobContext, Operator, as_bytes
from batchit.operators.capture import captured_output
from batchit.operators.commands import CommandStopped, CommandTimeout, run_command
from batchit.operators.imports import function_source, project_folders, unimportable
from batchit.operators.kept import KeptText
from batchit.operators.project_modules import current_module, module_key_files, put_project_on_path
from batchit.operators.step_state import process_state_kept
from batchit.placeholders import names_in, names_in_value, substitute

IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
FUNCTION_PATTERN = rf"^{IDENTIFIER}(\.{IDENTIFIER})*:{IDENTIFIER}$"
"""`package.module:name`, as entry points write it."""

STDERR_TAIL = 2000
"""How many characters of a failed command's stderr its error message quotes."""

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP, signal.SIGQUIT})
"""Signals that stop a command from outside (a Ctrl-C to the process group, a stopping build, the
OOM killer): a command they killed says nothing about its input."""


LONGEST_TIMEOUT = 7 * 24 * 3600
"""The schema maximum of `shell`'s `timeout`, in seconds (a week): the OS waits at most about 24 days
in one call, and Python overflows on timeouts far beyond that."""


NOT_PASSED = ("function", "version")
"""The `python` step's own keys, which are not passed to the function."""


class PythonCall(Operator):
    """`python`: call `function(value, ctx, **params)` from a module importable from the project root.

    The first step's value is the input's bytes (an aggregate's list of `InputFile` is passed as it
    is); every step key but `function` and `version` becomes a keyword argument. The module's source
    and the project modules it imports enter the action key through `key_files`, so editing the
    function or a helper of the project rebuilds its outputs; bump `version` when an installed
    package, or a module imported by a computed name, changes what it computes. A module is
    imported once per process and reused, until its source file changes (`batchit watch` builds in
    one process). What the call prints is kept for the job's log (batchit.operators.capture); the
    working directory and environment it changes are put back (batchit.operators.step_state).
    """

    name = "python"
    version = "1"
    logs_output = True
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Call a Python function; every other key is passed to it as a keyword argument.",
        "properties": {
            "function": {
                "type": "string",
                "pattern": FUNCTION_PATTERN,
                "description": (
                    "package.module:name of a function taking (value, ctx, **params), importable from "
                    "the project root. Its module's source is part of the job's key."
                ),
            },
            "version": {
                "type": "string",
                "minLength": 1,
                "description": "Your function's version: change it to rebuild when its behaviour changes.",
            },
        },
        "required": ["function", "version"],
        "propertyNames": {
            "not": {"enum": ["value", "ctx"]},
            "description": "value and ctx are the function's first two arguments, not parameters.",
        },
        "additionalProperties": True,
    }
    path_aware = True
    imports_user_code = True

    def key_files(self, params: Mapping[str, Any], root: Path) -> dict[str, Path]:
        """The function's module source, labelled `python:<module>`, and the project modules it
        imports, labelled `python:<module> imports <path>`: known before the job runs, so the key
        (and a `{key8}` name) is final from the first build.

        A module that cannot be found, or whose source surely defines no such function, raises
        RecipeError (see `function_source`): the plan refuses the rule, before any job fails on
        it. Nothing when the module has no source file to read.
        """
        function = params.get("function")
        if not isinstance(function, str):
            return {}
        put_project_on_path(root)
        source = function_source(function, root)
        if source is None:
            return {}
        return module_key_files(f"python:{function.partition(':')[0]}", source, root)

    def key_folders(self, params: Mapping[str, Any], root: Path) -> list[str]:
        """The project folders Python looks in for the function's module and the project modules
        it imports: one that appears there (`from pkg import extra` inside a `try`, a package
        `pkg/tool/` beside `pkg/tool.py`) changes what the step runs."""
        function = params.get("function")
        if not isinstance(function, str):
            return []
        source = function_source(function, root)
        return [] if source is None else project_folders(function.partition(":")[0], source, root)

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The function's result for the value, the job's context and the step's other keys.

        The keys are passed as copies: the step's parameters are shared by the rule's jobs (and a
        job's attempts), so a function that appends to a list it was given would otherwise hand
        the next job a value its key does not show.
        """
        function = _load_function(params["function"], ctx.root)
        kwargs = {key: copy.deepcopy(arg) for key, arg in params.items() if key not in NOT_PASSED}
        _check_call(function, params["function"], kwargs)
        argument = value.read_bytes() if isinstance(value, InputFile) else value
        printed, complained = KeptText(), KeptText()
        try:
            with captured_output(printed, complained), process_state_kept():
                result = function(argument, ctx, **kwargs)
        finally:  # once the capture has ended: what went to the file descriptors is in the buffers
            for stream, text in (("stdout", printed.getvalue()), ("stderr", complained.getvalue())):
                if text:
                    ctx.log.debug("%s %s:\n%s", params["function"], stream, text.rstrip("\n"))
        if inspect.iscoroutine(result):
            result.close()  # never awaited: closed, Python does not warn about it on stderr
            raise RecipeError(
                f"{params['function']} is an async function: it returns a coroutine, not a value",
                hint="make it a plain `def` (it may call asyncio.run on the coroutine it awaits)",
            )
        return result


def _check_call(function: Callable[..., Any], name: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse, as a fault of the rule, a call the function's signature cannot take (a step key it
    has no parameter for, or a parameter no key gives): inside the call the same mistake would be a
    TypeError, which quarantines the input as if it were to blame."""
    try:
        signature = _signature(function)
    except (TypeError, ValueError):  # a builtin or C function without one: let the call decide
        return
    attr = name.partition(":")[2]
    try:
        signature.bind_partial(None, None)
    except TypeError as exc:
        raise RecipeError(
            f"{name} cannot take the value and the job's context: {exc}",
            hint=f"define it as `def {attr}(value, ctx, **params)`: a python step's function gets the "
            "value and the job's context first, then the step's other keys by name",
        ) from None
    try:
        signature.bind(None, None, **kwargs)
    except TypeError as exc:
        if str(exc).startswith("missing"):
            hint = f"add the key to the step, or give {attr}'s parameter a default"
        else:
            hint = (
                f"give {attr} a parameter for each of the step's keys (besides function and version), "
                "or **params; or remove the keys it does not take"
            )
        raise RecipeError(f"{name} cannot take this step's keys: {exc}", hint=hint) from None


@functools.lru_cache(maxsize=256)
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def _load_function(target: str, root: Path) -> Callable[..., Any]:
    """The callable named by `module:name`, importing its module from the project root if needed."""
    module_name, _, attr = target.partition(":")
    put_project_on_path(root)
    try:
        module = current_module(module_name)
    except Exception as exc:  # whatever the module's top level raises fails every job alike
        raise unimportable(module_name, exc) from exc
    function: object = getattr(module, attr, None)
    if not callable(function):
        raise RecipeError(
            f"python step: module {module_name} has no function {attr}",
            hint=f"define `def {attr}(value, ctx, **params)` in {module.__file__ or module_name}",
        )
    return function


class ShellCommand(Operator):
    """`shell`: run `argv` (a list, no shell) and take what it writes as the step's value.

    - `{in}` is the input file: an input file's absolute path, or, for a value an earlier step
      produced, a temporary file holding it (named like the input). In an aggregate job an argument
      that is exactly `{in}` becomes one argument per input file.
    - `{out}` is a temporary file (named like the output, so tools that pick a format by extension
      work) that the command must write; its bytes are the value. Without `{out}`, the command's
      stdout is the value.
    - Without `{in}`, the value's bytes are the command's stdin (an aggregate's stdin is empty).
    - The command runs in the project root, with `env` added to batchit's environment (its values
      take `{in}` and `{out}` too). `{{`/`}}` are literal braces, in `argv` and `env`. Its stderr
      (and stdout, unless that is the value) goes to the job's log at debug level.
    - A non-zero exit is a permanent error quoting the end of stderr, unless `transient_exit_codes`
      lists it (a command killed by signal N exits -N); a timeout is transient, and so is a command
      killed by SIGINT, SIGTERM, SIGKILL, SIGHUP or SIGQUIT (stopped from outside, as a Ctrl-C to
      the terminal's process group does). Temporary files are always removed.
    - The command runs in a process group of its own: a timeout or a stopped build kills every
      process it started, and once it exits, what it left running in its group is killed too.
    """

    name = "shell"
    version = "1"
    logs_output = True
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Run a command (no shell); {in} is the input file, {out} the file it must write.",
        "properties": {
            "argv": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": (
                    "Program and arguments. {in}: the input file; {out}: the file the command writes "
                    "(without {out}, its stdout is the result). {{ and }} are literal braces."
                ),
            },
            "transient_exit_codes": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 255},
                "uniqueItems": True,
                "description": "Exit codes (1 to 255) that mean 'retry later'; other non-zero codes are "
                "permanent.",
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": LONGEST_TIMEOUT,
                "description": "Seconds before the command is killed (a week at most); a timeout is a "
                "transient failure. Without one, a command may run as long as it takes.",
            },
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Environment variables added to batchit's own for the command.",
            },
        },
        "required": ["argv"],
        "additionalProperties": False,
    }
    # The work happens in the child process, outside the GIL: a thread is enough to wait for it, and
    # a process-pool worker would only add a second process per job.
    resources = "io"
    path_aware = True
    runtime_placeholders = frozenset({"in", "out"})

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The bytes the command wrote to `{out}`, or its stdout."""
        argv: list[str] = params["argv"]
        used = names_in_value(argv)
        with tempfile.TemporaryDirectory(prefix="batchit-shell-") as tmp:
            inputs = _input_paths(value, ctx, Path(tmp)) if "in" in used else []
            out = Path(tmp, "out", PurePosixPath(ctx.output).name)
            out.parent.mkdir()
            command = _fill(argv, inputs, str(out))
            env = {name: _fill([text], inputs, str(out))[0] for name, text in params.get("env", {}).items()}
            stdin = b"" if "in" in used or isinstance(value, list) else as_bytes(value, self.name)
            stdout = self._execute(command, stdin, ctx, {**params, "env": env})
            if "out" not in used:
                return stdout
            if not out.is_file():
                raise RecipeError(f"{argv[0]} exited 0 but did not write its {{out}} file")
            return out.read_bytes()

    def _execute(self, command: list[str], stdin: bytes, ctx: JobContext, params: Mapping[str, Any]) -> bytes:
        """Run the command in the project root; its stdout, or the job error its failure means."""
        env: Mapping[str, str] | None = params.get("env")
        timeout: float | None = params.get("timeout")
        try:
            done = run_command(
                command,
                stdin,
                ctx.root,
                {**os.environ, **env} if env else None,
                timeout,
                stdout_logged="out" in names_in_value(params["argv"]),
            )
        except OSError as exc:  # not found, not executable
            raise RecipeError(
                f"cannot run {command[0]!r}: {exc.strerror or exc}",
                hint="install it, or give its path in argv",
            ) from exc
        except CommandStopped as exc:
            raise TransientError(f"{command[0]} was not run: the run is stopping") from exc
        except CommandTimeout as exc:
            raise TransientError(
                f"{command[0]} did not finish within {timeout} s and was killed, with what it started"
            ) from exc
        if done.stdout and "out" in names_in_value(params["argv"]):  # else stdout is the value
            ctx.log.debug("%s stdout:\n%s", command[0], done.stdout.decode("utf-8", errors="replace"))
        if done.stderr:
            ctx.log.debug("%s stderr:\n%s", command[0], done.stderr.decode("utf-8", errors="replace"))
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", errors="replace")[-STDERR_TAIL:].strip()
            message = f"{command[0]} exited with code {done.returncode}" + (f": {tail}" if tail else "")
            if done.returncode in params.get("transient_exit_codes", []) or _stopped(done.returncode):
                raise TransientError(message)
            raise PermanentError(message)
        return done.stdout


def _stopped(returncode: int) -> bool:
    """True when a command was killed by a signal that stops processes from outside (STOP_SIGNALS)."""
    return returncode < 0 and -returncode in STOP_SIGNALS


def _input_paths(value: Any, ctx: JobContext, tmp: Path) -> list[str]:
    """The files `{in}` stands for: the input files themselves, or a temporary copy of the value."""
    if isinstance(value, InputFile):
        return [str(value.absolute)]
    if isinstance(value, list) and all(isinstance(item, InputFile) for item in value):
        return [str(item.absolute) for item in value]
    name = PurePosixPath(ctx.input).name if isinstance(ctx.input, str) else "input"
    path = tmp / "in" / name
    path.parent.mkdir()
    path.write_bytes(as_bytes(value, ShellCommand.name))
    return [str(path)]


def _fill(argv: list[str], inputs: list[str], out: str) -> list[str]:
    """`argv` with `{in}` and `{out}` filled; a whole `{in}` argument expands to every input."""
    values = {"out": out, **({"in": inputs[0]} if len(inputs) == 1 else {})}
    command: list[str] = []
    for arg in argv:
        if arg == "{in}":
            command.extend(inputs)
        elif "in" in names_in(arg) and len(inputs) != 1:
            raise RecipeError(
                f"shell argument {arg!r} embeds {{in}}, but this job has {len(inputs)} input files",
                hint="in an aggregate job, write {in} as an argument of its own: it becomes one per input",
            )
        else:
            command.append(str(substitute(arg, values)))
    return command
