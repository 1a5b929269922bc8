"""Every built-in language, end to end, and the registry's errors."""

import re
import subprocess

import pytest

import codeexec
from codeexec import Language, LanguageRegistry, Submission, TestCase, Verdict

A_PLUS_B = {
    "python": "a, b = map(int, input().split())\nprint(a + b)",
    "c": "#include <stdio.h>\n"
    'int main(void){long a,b;scanf("%ld %ld",&a,&b);printf("%ld\\n",a+b);}',
    "cpp": "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<'\\n';}",
    "javascript": "const [a,b]=require('fs').readFileSync(0,'utf8')"
    ".trim().split(/\\s+/).map(Number);console.log(a+b)",
    "java": "import java.util.*;\npublic class Main{public static void main(String[] x){"
    "Scanner s=new Scanner(System.in);System.out.println(s.nextLong()+s.nextLong());}}",
    "bash": "read a b\necho $((a + b))",
}


@pytest.mark.parametrize("language", sorted(A_PLUS_B))
def test_language_runs_and_is_judged(executor, language):
    sub = Submission(
        language=language,
        code=A_PLUS_B[language],
        tests=[TestCase("1 2", "3"), TestCase("40 2", "42"), TestCase("2 2", "5")],
        limits={"cpu_time": 5, "memory": "512M"},
    )
    result = executor.run(sub)
    verdicts = [t.verdict for t in result.tests]
    assert verdicts == [Verdict.ACCEPTED, Verdict.ACCEPTED, Verdict.WRONG_ANSWER], result
    assert result.verdict is Verdict.WRONG_ANSWER
    assert result.reproducibility["toolchain"]["version"]
    assert result.reproducibility["backend"]["name"] == "process"


def test_compiles_once_for_all_tests_and_reuses_the_artifact(executor):
    code = '#include <stdio.h>\nint main(void){puts("same");} // unique 4711'
    tests = [TestCase(expected="same")] * 3
    first = executor.run(Submission(language="c", code=code, tests=tests))
    assert first.verdict is Verdict.ACCEPTED and first.compile.ok and not first.compile.cached
    again = executor.run(Submission(language="c", code=code, tests=[TestCase(expected="same")]))
    assert again.verdict is Verdict.ACCEPTED
    assert again.compile.cached, "the same source was compiled twice"


def test_compilation_error_carries_the_compiler_message(executor):
    result = executor.run(Submission(language="cpp", code="int main() { return x; }"))
    assert result.verdict is Verdict.COMPILATION_ERROR
    assert result.tests == ()
    assert "x" in result.compile.stderr and not result.compile.ok


def test_unknown_language_names_the_available_ones(executor):
    with pytest.raises(codeexec.UnknownLanguageError) as info:
        executor.run(Submission(language="cobol", code="x"))
    assert "python" in str(info.value) and info.value.available


def test_aliases_resolve():
    registry = LanguageRegistry(codeexec.default_languages())
    assert registry.get("py").name == "python"
    assert registry.get("C++").name == "cpp"
    assert registry.get("node").name == "javascript"


def test_missing_toolchain_is_a_clear_error(executor):
    registry = LanguageRegistry(
        [Language(name="zig", source="main.zig", run=("zig-compiler-not-here", "run"))]
    )
    with pytest.raises(codeexec.ToolchainError, match="zig-compiler-not-here"):
        registry.toolchain("zig")


def test_host_registers_its_own_language(process_sandbox):
    registry = LanguageRegistry(codeexec.default_languages())
    registry.register(
        Language(
            name="python-opt",
            source="solution.py",
            run=("python3", "-O", "solution.py"),
            version_command=("python3", "--version"),
        )
    )
    with codeexec.Executor(process_sandbox, languages=registry) as ex:
        result = ex.run(
            Submission(language="python-opt", code="assert False\nprint('asserts off')")
        )
    assert result.verdict is Verdict.ACCEPTED
    assert result.tests[0].stdout == "asserts off\n"


def test_javac_runs_no_annotation_processor_a_submission_ships(executor, tmp_path):
    """A processor in the submission's files (found through META-INF/services on the
    class path) would run inside the compiler, with the compiler's limits."""
    import shutil
    import subprocess

    if not shutil.which("javac"):
        pytest.skip("no javac on this host")
    source = tmp_path / "Proc.java"
    source.write_text(
        "import javax.annotation.processing.*; import javax.lang.model.element.*;\n"
        "import java.util.Set;\n"
        '@SupportedAnnotationTypes("*")\n'
        "public class Proc extends AbstractProcessor {\n"
        "  public synchronized void init(ProcessingEnvironment env) {\n"
        '    super.init(env); System.err.println("PROCESSOR RAN"); }\n'
        "  public boolean process(Set<? extends TypeElement> a, RoundEnvironment r) {\n"
        "    return false; }\n"
        "}\n"
    )
    subprocess.run(["javac", "-d", str(tmp_path), str(source)], check=True, capture_output=True)
    files = [
        codeexec.File("Proc.class", (tmp_path / "Proc.class").read_bytes()),
        codeexec.File("META-INF/services/javax.annotation.processing.Processor", b"Proc\n"),
    ]
    sub = Submission(
        language="java",
        code=A_PLUS_B["java"],
        files=files,
        tests=[TestCase("1 2", "3")],
        limits={"cpu_time": 5, "memory": "512M"},
    )
    result = executor.run(sub)
    assert result.verdict is Verdict.ACCEPTED, result
    assert "PROCESSOR RAN" not in result.compile.stderr + result.compile.stdout, result.compile


PYTHON_ERRORS = {
    "unclosed": "print(1",
    "indent": "x = 1\n  y = 2\n",
    "bad token": "def f(:\n    pass\n",
    "too deep": "x = " + "(" * 300 + ")" * 300 + "\n",
    "recursion": "x = " + "-" * 100_000 + "1\n",
    # compile() words this otherwise than the file reader (the error is the same).
    "bad encoding": b"print('\xff')\n",
}
WORDED_OTHERWISE = {"bad encoding": "0xff"}
#: The interpreter the sandbox runs (the toolchain's: /usr/local/bin comes first).
PYTHON = LanguageRegistry(codeexec.default_languages()).toolchain("python").tools["python3"]


@pytest.mark.parametrize("name", sorted(PYTHON_ERRORS))
def test_python_that_does_not_parse_is_a_compilation_error_with_pythons_message(
    executor, name, tmp_path
):
    """An LLM-evaluation harness must tell a syntax error from a failed test."""
    code = PYTHON_ERRORS[name]
    result = executor.run(Submission(language="python", code=code, tests=[TestCase("", "1")]))
    assert result.verdict is Verdict.COMPILATION_ERROR and not result.tests
    # The message is the one python3 main.py gives (its last line names the error).
    main = tmp_path / "main.py"
    main.write_bytes(code.encode() if isinstance(code, str) else code)
    direct = subprocess.run(
        [PYTHON, "-B", "-E", "-s", "main.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert direct.returncode == 1
    if name in WORDED_OTHERWISE:
        assert WORDED_OTHERWISE[name] in result.compile.stderr
    else:
        # The same text, but for the work directory (the sandbox's is another).
        assert re.sub(r'"/\S*/main.py"', "main.py", result.compile.stderr) == re.sub(
            r'"/\S*/main.py"', "main.py", direct.stderr
        )


@pytest.mark.parametrize("code", ["print(1)\x00", "print('a\x00')\n"])
def test_a_nul_byte_is_judged_as_python3_main_py_judges_it(executor, code, tmp_path):
    """3.11 reads a file up to its first NUL, 3.12 refuses it: the run decides."""
    (tmp_path / "main.py").write_text(code)
    direct = subprocess.run([PYTHON, "main.py"], cwd=tmp_path, capture_output=True)
    result = executor.run(Submission(language="python", code=code))
    expected = Verdict.ACCEPTED if direct.returncode == 0 else Verdict.RUNTIME_ERROR
    if b"SyntaxError" in direct.stderr and direct.returncode == 1:
        assert result.verdict in (Verdict.RUNTIME_ERROR, Verdict.COMPILATION_ERROR)
    else:
        assert result.verdict is expected


def test_python_that_parses_but_fails_is_still_a_runtime_error(executor):
    result = executor.run(Submission(language="python", code="print(undefined_name)"))
    assert result.verdict is Verdict.RUNTIME_ERROR and result.compile.ok
    assert "NameError" in result.tests[0].stderr


@pytest.mark.parametrize(
    ("code", "main"),
    [
        (
            "public class Solution{public static void main(String[] a){System.out.println(7);}}",
            "Solution",
        ),
        (
            "// public class Fake {\n/* public class X {} */\nclass Helper{}\n"
            'public final class Answer { static String s = "public class Y {";\n'
            "public static void main(String[] a){System.out.println(7);}}",
            "Answer",
        ),
        ("class Only{public static void main(String[] a){System.out.println(7);}}", "Only"),
    ],
)
def test_java_runs_the_public_class_whatever_its_name(executor, code, main):
    result = executor.run(
        Submission(
            language="java",
            code=code,
            tests=[TestCase("", "7")],
            limits={"cpu_time": 5, "memory": "512M"},
        )
    )
    assert result.verdict is Verdict.ACCEPTED, result
    assert result.reproducibility["language"] == "java"
    java = next(lang for lang in codeexec.default_languages() if lang.name == "java")
    assert java.main_name(code.encode()) == main
