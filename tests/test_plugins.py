"""Third-party sandboxes are found through the ``codeexec.sandboxes`` entry points."""

import pytest

import codeexec
from codeexec import Submission

PLUGIN = '''
from codeexec.backends.process import ProcessSandbox


class DemoSandbox(ProcessSandbox):
    """A third party's backend: here, the process sandbox under another name."""

    name = "demo"
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    (tmp_path / "codeexec_demo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "codeexec_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: codeexec-demo-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[codeexec.sandboxes]\n"
        "demo = codeexec_demo_plugin:DemoSandbox\n"
        "broken = codeexec_demo_plugin:NoSuchClass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_sandbox_is_found_and_used(installed_plugin):
    assert {"demo", "broken", "process"} <= set(codeexec.available_sandboxes())
    with codeexec.Executor("demo", sandbox_options={"slots": 1}) as ex:
        result = ex.run(Submission(language="python", code="print('via plugin')"))
    assert result.backend == "demo"
    assert result.tests[0].stdout == "via plugin\n"


def test_broken_entry_point_is_unavailable_not_unknown(installed_plugin):
    with pytest.raises(codeexec.SandboxUnavailableError, match="broken"):
        codeexec.get_sandbox("broken")
