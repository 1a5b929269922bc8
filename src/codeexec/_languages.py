"""Languages: how to compile and run a program, and which toolchain version does it.

A :class:`Language` is data: a main file name, an optional compile command, a run
command and the artifacts a compile leaves. Commands are templates; ``{memory_mb}`` is
replaced by the run's memory limit in MiB (for runtimes that size their heap, like the
JVM), and ``{main}`` (also in the file name) by the program's main name: ``Main``, or
what the language's ``main_from`` rule reads in the code (Java's public class). The
first word of a command is a tool name found on the toolchain search path (never the
caller's PATH, which may hold shims a sandboxed uid cannot run).

The default registry has python, c, cpp, javascript, java and bash; a host adds its own
with :meth:`LanguageRegistry.register`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._errors import ToolchainError, UnknownLanguageError
from ._model import Limits, str_tuple

__all__ = ["Language", "LanguageRegistry", "Toolchain", "default_languages"]

#: Where toolchains are looked up, and the PATH programs run with.
TOOLCHAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@attrs.frozen
class Toolchain:
    """A resolved toolchain: the tools' absolute paths and the detected version."""

    language: str
    version: str
    tools: Mapping[str, str]  # tool name → absolute path

    def directories(self) -> tuple[str, ...]:
        """Host directories the toolchain lives in (for sandboxes that mount them)."""
        return tuple(sorted({os.path.dirname(os.path.realpath(p)) for p in self.tools.values()}))


@attrs.frozen(kw_only=True)
class Language:
    """How to build and run programs of one language."""

    name: str
    source: str  # the main file's name in the work directory
    run: tuple[str, ...] = attrs.field(converter=str_tuple)
    compile: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v)
    )
    artifacts: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    version_command: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    aliases: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    env: Mapping[str, str] = attrs.field(factory=dict)
    #: How ``{main}`` is read from the code: None (always ``Main``) or the name of a
    #: rule in :data:`MAIN_RULES` (``"java"``: the public top-level class).
    main_from: str | None = attrs.field(default=None)
    #: Runs of this language get this many times the CPU and wall time asked for
    #: (judges give Java and Python more); compiles do not.
    time_multiplier: float = attrs.field(default=1.0)

    @time_multiplier.validator
    def _positive(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not isinstance(value, int | float) or not 0 < value <= 100:
            raise ValueError(f"time_multiplier must be above 0 and at most 100: {value!r}")

    @main_from.validator
    def _known_rule(self, attribute: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None and value not in MAIN_RULES:
            raise ValueError(f"main_from must be one of {sorted(MAIN_RULES)} or None: {value!r}")

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    def main_name(self, code: bytes | None) -> str:
        """The program's main name: ``Main`` unless the ``main_from`` rule finds one in
        ``code`` (the main file's content; None when it comes among the files)."""
        if self.main_from is None or code is None:
            return DEFAULT_MAIN
        return MAIN_RULES[self.main_from](code) or DEFAULT_MAIN

    def source_name(self, main: str = "Main") -> str:
        """The main file's name in the work directory."""
        return self.source.format(main=main)

    def definition(self) -> dict[str, Any]:
        """What decides how a program of this language builds and runs (everything but
        the name's aliases and the version probe): part of every cache key."""
        return {
            "source": self.source,
            "compile": None if self.compile is None else list(self.compile),
            "run": list(self.run),
            "artifacts": list(self.artifacts),
            "env": dict(sorted(self.env.items())),
            "main_from": self.main_from,
            "time_multiplier": self.time_multiplier,
        }

    def run_limits(self, limits: Limits) -> Limits:
        """The limits a run of this language gets: CPU and wall time multiplied."""
        if self.time_multiplier == 1:
            return limits
        wall = None if limits.wall_time is None else limits.wall_time * self.time_multiplier
        return attrs.evolve(limits, cpu_time=limits.cpu_time * self.time_multiplier, wall_time=wall)

    def tools(self) -> list[str]:
        """Tool names this language needs (first words of its commands)."""
        names = []
        for command in (self.compile, self.run, self.version_command):
            if command and not command[0].startswith(("./", "/")) and command[0] not in names:
                names.append(command[0])
        return names

    def render(
        self, command: tuple[str, ...], toolchain: Toolchain, limits: Limits, main: str = "Main"
    ) -> list[str]:
        """A command with its tool resolved and its placeholders filled in."""
        values = {"memory_mb": max(16, limits.memory // (1024 * 1024)), "main": main}
        argv = [part.format(**values) for part in command]
        argv[0] = toolchain.tools.get(argv[0], argv[0])
        return argv

    def run_env(self) -> dict[str, str]:
        """The scrubbed environment a program of this language runs with (the sandbox
        adds HOME, its work directory)."""
        env = {
            "PATH": TOOLCHAIN_PATH,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        env.update(self.env)
        return env


DEFAULT_MAIN = "Main"

# Java's lexical layer, enough to find top-level type declarations: comments, text
# blocks, strings and chars are skipped whole (a "class X" inside them is not code).
# Each literal also ends where the text (or, for one-line literals, the line) ends, and
# modifiers repeat a bounded number of times: hostile code cannot make the scan
# quadratic (an unterminated "/*" must not be searched for its end from every "/*").
_JAVA_TOKENS = re.compile(
    r"//[^\n]*"  # a line comment
    r"|/\*.*?(?:\*/|\Z)"  # a block comment
    r'|"""(?:\\.|[^\\])*?(?:"""|\Z)'  # a text block
    r'|"(?:\\.|[^"\\\n])*(?:"|(?=\n)|\Z)'  # a string
    r"|'(?:\\.|[^'\\\n])*(?:'|(?=\n)|\Z)"  # a char
    r"|(?P<brace>[{}])"
    r"|(?P<decl>\b(?P<mods>(?:(?:public|protected|private|abstract|final|sealed|non-sealed"
    r"|static|strictfp)\s+){0,8})(?:class|interface|enum|record)\s+"
    r"(?P<name>[A-Za-z_$][\w$]{0,254}))",
    re.S,
)


def _java_main(code: bytes) -> str | None:
    """The public top-level type's name (javac wants it as the file's name), else the
    first top-level type's; None if there is none."""
    text = code.decode("utf-8", "replace")
    depth = 0
    first = None
    for token in _JAVA_TOKENS.finditer(text):
        if token.group("brace"):
            depth = depth + 1 if token.group("brace") == "{" else max(0, depth - 1)
        elif token.group("decl") and depth == 0:
            if "public" in token.group("mods").split():
                return token.group("name")
            first = first or token.group("name")
    return first


#: Rules that read a program's main name from its code (``Language.main_from``).
MAIN_RULES = {"java": _java_main}


class LanguageRegistry:
    """Languages by name and alias; toolchains resolved once and cached."""

    def __init__(self, languages: Iterable[Language] = (), search_path: str = TOOLCHAIN_PATH):
        self._languages: dict[str, Language] = {}
        self._aliases: dict[str, str] = {}
        self._toolchains: dict[str, Toolchain] = {}
        self._lock = threading.Lock()
        self.search_path = search_path
        for language in languages:
            self.register(language)

    def register(self, language: Language) -> None:
        """Add (or replace) a language."""
        with self._lock:
            self._languages[language.name] = language
            for alias in (language.name, *language.aliases):
                self._aliases[alias.lower()] = language.name
            self._toolchains.pop(language.name, None)

    def names(self) -> list[str]:
        return sorted(self._languages)

    def get(self, name: str) -> Language:
        """The language called ``name`` (or an alias); :class:`UnknownLanguageError`."""
        key = self._aliases.get(name.strip().lower())
        if key is None:
            raise UnknownLanguageError(name, self.names())
        return self._languages[key]

    def toolchain(self, name: str) -> Toolchain:
        """Resolve the language's tools and detect its version (cached)."""
        language = self.get(name)
        cached = self._toolchains.get(language.name)
        if cached is not None:
            return cached
        tools = {}
        for tool in language.tools():
            path = shutil.which(tool, path=self.search_path)
            if path is None:
                raise ToolchainError(
                    f"{language.name}: {tool!r} was not found on {self.search_path}"
                    f" (available languages here: {', '.join(self.available()) or 'none'})"
                )
            tools[tool] = os.path.realpath(path)
        toolchain = Toolchain(language.name, _detect_version(language, tools), tools)
        with self._lock:
            self._toolchains[language.name] = toolchain
        return toolchain

    def available(self) -> list[str]:
        """Languages whose tools are all present on this host."""
        return [
            name
            for name, language in sorted(self._languages.items())
            if all(shutil.which(t, path=self.search_path) for t in language.tools())
        ]

    def describe(self) -> list[dict[str, Any]]:
        """One row per language: name, aliases, whether it is usable, version or why not."""
        rows = []
        for name in self.names():
            language = self._languages[name]
            try:
                toolchain = self.toolchain(name)
                rows.append(
                    {
                        "name": name,
                        "aliases": list(language.aliases),
                        "available": True,
                        "version": toolchain.version,
                        "compiled": language.compiled,
                    }
                )
            except ToolchainError as exc:
                rows.append(
                    {
                        "name": name,
                        "aliases": list(language.aliases),
                        "available": False,
                        "error": str(exc),
                        "compiled": language.compiled,
                    }
                )
        return rows


def _detect_version(language: Language, tools: Mapping[str, str]) -> str:
    if not language.version_command:
        return "unknown"
    argv = list(language.version_command)
    argv[0] = tools.get(argv[0], argv[0])
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            timeout=30,
            env={"PATH": TOOLCHAIN_PATH, "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{language.name}: cannot run {argv}: {exc}") from exc
    text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    if proc.returncode != 0 or not text:
        raise ToolchainError(f"{language.name}: {argv} failed with exit code {proc.returncode}")
    return text.splitlines()[0].strip()


# Compiles main.py (no code of it runs) and prints what python3 main.py would print
# for an error found before the first line runs. Not ValueError: compile() refuses NUL
# bytes where python3 (3.11) reads a file up to its first NUL; the run decides then.
# No braces: commands are templates.
_PYTHON_SYNTAX_CHECK = """\
import os, sys
path = os.path.abspath(sys.argv[1])  # python3 main.py names the script so
try:
    compile(open(path, "rb").read(), path, "exec", dont_inherit=True)
except ValueError:
    pass
except (SyntaxError, RecursionError, MemoryError) as exc:
    import traceback
    sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
    sys.exit(1)
"""


def _gcc(name: str, aliases: tuple[str, ...], std: str) -> tuple[Language]:
    """C or C++ with GCC at one language standard (one language per standard, as
    judges list them: the standard is in its definition, so in every cache key)."""
    cpp = "++" in std
    compiler, source = ("g++", "main.cpp") if cpp else ("gcc", "main.c")
    libraries = () if cpp else ("-lm",)
    return (
        Language(
            name=name,
            aliases=aliases,
            source=source,
            compile=(compiler, "-O2", f"-std={std}", "-pipe", "-o", "main", source, *libraries),
            run=("./main",),
            artifacts=("main",),
            version_command=(compiler, "--version"),
        ),
    )


def default_languages() -> list[Language]:
    """The built-in languages."""
    return [
        Language(
            name="python",
            aliases=("py", "python3"),
            source="main.py",
            # A syntax error is a compilation error (what an LLM-evaluation harness must
            # tell from a failed test), found by the interpreter that runs the program.
            compile=("python3", "-I", "-S", "-c", _PYTHON_SYNTAX_CHECK, "main.py"),
            artifacts=("main.py",),
            # -B: no .pyc in the work dir; -E/-s: no PYTHON* variables, no user site.
            run=("python3", "-B", "-E", "-s", "main.py"),
            version_command=("python3", "--version"),
        ),
        *_gcc("c", ("gcc", "c17", "gnu17"), "gnu17"),
        *_gcc("c11", ("gnu11",), "gnu11"),
        *_gcc("cpp", ("c++", "g++", "cxx", "cpp17", "c++17", "gnu++17"), "gnu++17"),
        *_gcc("cpp20", ("c++20", "gnu++20"), "gnu++20"),
        *_gcc("cpp23", ("c++23", "gnu++23"), "gnu++23"),
        Language(
            name="javascript",
            aliases=("js", "node", "nodejs"),
            source="main.js",
            run=("node", "main.js"),
            version_command=("node", "--version"),
        ),
        Language(
            name="java",
            # javac wants a public class in a file of its name: {main} is that name.
            source="{main}.java",
            main_from="java",
            compile=(
                "javac",
                "-J-XX:+UseSerialGC",
                "-J-XX:-UsePerfData",
                "-J-Xshare:auto",
                # No annotation processors: a submission could ship one in a jar or
                # META-INF/services and run code inside the compiler.
                "-proc:none",
                "-encoding",
                "UTF-8",
                "{main}.java",
            ),
            # The JVM sizes its heap from the host's memory, not the run's cgroup:
            # give it the run's limit, less room for the JVM's own memory.
            run=(
                "java",
                "-XX:+UseSerialGC",
                "-XX:-UsePerfData",
                "-Xshare:auto",
                "-XX:TieredStopAtLevel=1",
                "-Xss64m",
                "-Xmx{memory_mb}m",
                "-cp",
                ".",
                "{main}",
            ),
            artifacts=("*.class",),
            version_command=("javac", "-version"),
        ),
        Language(
            name="bash",
            aliases=("sh", "shell"),
            source="main.sh",
            run=("bash", "main.sh"),
            version_command=("bash", "--version"),
        ),
    ]
