"""The website publishes itself: the GitHub Actions workflow is valid (actionlint), builds,
checks and deploys with the official Pages actions, and runs the README's own commands, so
the two cannot drift apart. The site's address follows the repository in ``_config.yml``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eaviz.notebooks import load_config
from eaviz.site import site_url, sync_site_address

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
README = (ROOT / "README.md").read_text()


def readme_command(marker: str) -> str:
    """The first command of the code block after ``<!-- marker -->`` in the README."""
    block = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)```", README, re.S)
    assert block, f"no <!-- {marker} --> code block in README.md"
    return block.group(1).strip().splitlines()[0].strip()


@pytest.fixture(scope="module")
def workflow() -> dict:
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as True
    return document


def runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint", path=Path(sys.executable).parent) or shutil.which("actionlint")
    assert actionlint, "actionlint is missing: pip install -r requirements.txt"
    result = subprocess.run([actionlint, "-no-color", WORKFLOW], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_on_push_to_main_and_by_hand(workflow: dict):
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in workflow["on"]


def test_build_job_installs_and_builds_with_the_readme_command(workflow: dict):
    assert runs(workflow["jobs"]["build"])[0] == readme_command("main-command")
    assert "-W" in readme_command("main-command").split()


def test_build_job_checks_links_with_the_readme_command_before_uploading(workflow: dict):
    build = workflow["jobs"]["build"]
    assert runs(build)[1] == readme_command("link-check-command")
    assert uses(build)[-1] == "actions/upload-pages-artifact"
    assert build["steps"][-1]["with"]["path"] == "_build/html"


def test_pip_takes_cpu_torch_and_caches_downloads(workflow: dict):
    assert workflow["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in README
    for name in ("build", "test"):
        steps = workflow["jobs"][name]["steps"]
        (setup,) = [step for step in steps if step.get("uses", "").startswith("actions/setup-python")]
        assert setup["with"]["cache"] == "pip"


def test_test_job_installs_as_the_readme_does_and_runs_the_fast_tests(workflow: dict):
    install, tests = runs(workflow["jobs"]["test"])
    assert readme_command("main-command").startswith(install + " && ")
    assert tests == readme_command("fast-test-command")


def test_deploy_job_uses_the_pages_actions_with_their_permissions(workflow: dict):
    deploy = workflow["jobs"]["deploy"]
    assert set(deploy["needs"]) == {"build", "test"}
    assert uses(deploy) == ["actions/deploy-pages"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"] and workflow["concurrency"]["cancel-in-progress"] is False


def test_readme_test_command_for_ci_runs_the_full_suite():
    assert readme_command("test-command") == ".venv/bin/python -m pytest"


def test_site_url_follows_the_repository():
    assert site_url({"repository": {"url": "https://github.com/Someone/fork"}}) == "https://someone.github.io/fork/"
    assert site_url({"repository": {"url": "https://github.com/me/me.github.io"}}) == "https://me.github.io/"
    with pytest.raises(ValueError, match="expected repository.url in _config.yml to be https://github.com/OWNER/NAME"):
        site_url({"repository": {"url": "https://gitlab.com/me/book"}})


def test_readme_config_and_footer_state_the_address_derived_from_the_repository():
    config = load_config(ROOT)
    address = site_url(config)
    assert config["html"]["baseurl"] == address
    assert f'href="{address}"' in config["html"]["extra_footer"]
    assert f"<{address}>" in README
    assert "Settings → Pages" in README and "GitHub Actions" in README  # how a fork publishes: for its owner
    assert "Settings" not in config["html"]["extra_footer"]  # not for the book's readers


def test_sync_site_address_moves_a_fork_to_its_own_address(tmp_path: Path):
    shutil.copy(ROOT / "_config.yml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    config = (tmp_path / "_config.yml").read_text()
    (tmp_path / "_config.yml").write_text(config.replace("github.com/eaviz/", "github.com/me/"))
    assert sync_site_address(tmp_path) == [tmp_path / "_config.yml", tmp_path / "README.md"]
    fork = load_config(tmp_path)
    assert fork["html"]["baseurl"] == "https://me.github.io/external-attention-book/"
    assert "eaviz.github.io" not in fork["html"]["extra_footer"]
    assert "<https://me.github.io/external-attention-book/>" in (tmp_path / "README.md").read_text()
    assert sync_site_address(tmp_path) == []
