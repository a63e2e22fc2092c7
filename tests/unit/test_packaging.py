"""Packaging: the SDK is a thin HTTP client (no server code, no AWS SDK at import), its optional
parts fail with a message saying what to install, each package is typed, and the layer leaves the
AWS SDK to the Lambda runtime."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Makes the named top-level packages unimportable, as on a machine without the extra.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_given_the_sdk_and_its_cli_when_imported_then_no_server_code_nor_aws_sdk_comes_with_them():
    out = python("import sys, a3s_serverless, a3s_serverless.cli.main, a3s_serverless.worker\n"
                 "print(sorted({m.split('.')[0] for m in sys.modules} & "
                 "{'a3s_core', 'a3s_local', 'boto3', 'botocore', 'moto', 'pydantic', 'yaml'}))")

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_given_no_local_extra_when_agent_local_is_called_then_an_import_error_says_what_to_install():
    out = python(BLOCK.format(blocked={"a3s_local", "moto", "yaml"}) +
                 "from a3s_serverless import Agent\n"
                 "try:\n    Agent.local()\nexcept ImportError as err:\n    print('ImportError:', err)\n")

    assert out.returncode == 0, out.stderr
    assert "ImportError: Agent.local() needs pip install 'a3s-serverless[local]'" in out.stdout


def test_given_no_worker_extra_when_a3s_worker_starts_then_it_exits_2_saying_what_to_install(tmp_path):
    out = python(BLOCK.format(blocked={"a3s_core"}) +
                 "import sys\nfrom a3s_serverless.worker import main\nsys.exit(main())",
                 "--endpoint", "http://127.0.0.1:9", "--api-key", "k", "--lane", "execute",
                 "--workspace", str(tmp_path))

    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "pip install 'a3s-serverless[worker]'" in out.stderr


@pytest.mark.parametrize("package", ["sdk/a3s_serverless", "layers/core/a3s_core", "local/a3s_local"])
def test_given_each_package_then_it_says_it_is_typed(package):
    assert (ROOT / package / "py.typed").is_file()


def test_given_the_sdk_wheel_then_it_holds_the_sdk_alone(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("a3s_serverless-*.whl")

    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}

    assert {t for t in tops if not t.endswith(".dist-info")} == {"a3s_serverless"}
    assert "a3s_serverless/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_given_the_layer_then_it_leaves_the_aws_sdk_to_the_runtime_and_ranges_are_not_pins():
    layer = (ROOT / "layers/core/requirements.txt").read_text().lower()
    names = {line.split("==")[0].split("[")[0].strip() for line in layer.splitlines()
             if line.strip() and not line.startswith("#")}

    assert not names & {"boto3", "botocore", "s3transfer", "urllib3"}
    assert "BuildMethod: makefile" in (ROOT / "template.yaml").read_text()
    sdk = (ROOT / "pyproject.toml").read_text()
    assert "==" not in sdk.split("[project.optional-dependencies]")[0].split("dependencies =")[1]
