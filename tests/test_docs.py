"""The documentation: README.md is a front page, docs/ builds as a site with warnings as errors, every
command the pages give still composes (or, for lrexp's other modules, takes the flags it is given), and
the public names a user types are pinned."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.helpers import cli_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))
FRONT_PAGE_LINES = 250


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess:
    """The site as README.md says to build it: warnings (a broken link or anchor, a page outside every
    table of contents, an lrexp name that is gone) are errors."""
    pytest.importorskip("sphinx", reason="the docs extra (Sphinx 9 needs Python 3.11+)")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(source), str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=cli_env())


# --- the site ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors_and_has_every_page(tmp_path):
    built = sphinx_build(DOCS, tmp_path / "html")
    assert built.returncode == 0, built.stderr[-5000:]
    for page in PAGES:
        assert (tmp_path / "html" / f"{page.stem}.html").is_file(), page.name
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("lrexp.schedule.build", "lrexp.recorder.Recorder", "lrexp.integrations.transformers.LrexpCallback"):
        assert f'id="{name}"' in api, name  # documented from its docstring
    assert "Any schedule lrexp knows" in api


@pytest.mark.slow
@pytest.mark.parametrize(
    "breakage, says",
    [
        ("[gone](schedules.md#no-such-heading)", "no-such-heading"),
        ("[gone](no_such_page.md)", "no_such_page"),
        ("```{eval-rst}\n.. autofunction:: lrexp.no_such_module.build\n```", "lrexp.no_such_module"),
    ],
)
def test_a_broken_link_anchor_or_module_fails_the_build(tmp_path, breakage, says):
    """The check can fail: the same pages with one stale reference do not build."""
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build"))
    # The pages link to files of the repository (../lrexp/...): keep them reachable from the copy.
    for entry in ROOT.iterdir():
        if entry.name not in ("docs", ".git", ".venv") and not (tmp_path / entry.name).exists():
            (tmp_path / entry.name).symlink_to(entry)
    page = source / "outputs.md"
    page.write_text(page.read_text() + f"\n\n{breakage}\n")
    built = sphinx_build(source, tmp_path / "html")
    assert built.returncode != 0 and says in built.stderr, built.stderr[-3000:]


# --- the front page ---------------------------------------------------------------------------------


def links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_is_a_front_page_whose_links_all_resolve():
    text = README.read_text()
    assert len(text.splitlines()) < FRONT_PAGE_LINES
    for section in ("## Quick start", "## One run", "## A sweep and its report", "## Your own model", "## Run the tests"):
        assert section in text
    targets = [t for t in links(text) if not t.startswith("http")]
    for target in targets:
        path = target.split("#", 1)[0]
        assert (ROOT / path).exists(), target
    linked = {Path(t.split("#", 1)[0]).name for t in targets if t.startswith("docs/")}
    assert linked >= {p.name for p in PAGES} - {"index.md"}, "every page is reachable from the front page"


def test_the_readme_test_command_is_what_ci_runs():
    command = re.search(r"## Run the tests\n\n```bash\n(.+)\n```", README.read_text())
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text()


# --- every command the pages give -------------------------------------------------------------------


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``python -m lrexp...`` command in a bash block of README.md or docs/: (module, arguments)."""
    out = []
    for path in [README, *PAGES]:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            block = block.replace("\\\n", " ")
            for var, values in re.findall(r"for (\w+) in ([^;]+); do", block):  # a shell loop: its first value
                block = block.replace(f"${var}", values.split()[0])
            for line in block.splitlines():
                command = line.split("&&")[-1].strip()
                if not command.startswith("python -m lrexp"):
                    continue
                words = shlex.split(command, comments=True)
                out.append((words[2], words[3:]))
    return out


COMMANDS = documented_commands()
MAIN = [args for module, args in COMMANDS if module == "lrexp"]
# Commands that need what an earlier documented command made (a sweep's predicted schedule): their
# overrides are composed without that one search path and option.
MADE_BY_ANOTHER = re.compile(r"hydra\.searchpath=\[file://.*(multirun|OUT)/|scheduler=law_optimal")


# Hydra plugins the docs show with lrexp that are installed on their own (the page says so).
PLUGINS_ELSEWHERE = {"hydra/sweeper=optuna": "hydra_plugins.hydra_optuna_sweeper"}


def expand(overrides: list[str]) -> list[list[str]]:
    """A multirun's first and last job (Hydra's own parser expands the sweeps); a run's overrides as they are."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_interval_sweep():  # an Optuna or Ax search space: its ends
            interval = override.value()
            choices.append([f"{key}={interval.start}", f"{key}={interval.end}"])
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
            choices.append([f"{key}={values[0]}", f"{key}={values[-1]}"])
        else:
            choices.append([override.input_line])
    jobs = [list(p) for p in product(*choices)]
    return [jobs[0], jobs[-1]]


def test_the_pages_give_commands_to_check():
    assert len(MAIN) >= 40 and {m for m, _ in COMMANDS} >= {"lrexp", "lrexp.report", "lrexp.lr_find", "lrexp.preview"}


@pytest.mark.parametrize("args", MAIN, ids=[" ".join(a)[:80] for a in MAIN])
def test_every_documented_run_and_sweep_composes(args):
    """Each `python -m lrexp ...` of the docs names groups, options and keys that exist, with values of the
    right type: composed exactly as Hydra composes it (the first and the last job of a sweep)."""
    for choice, plugin in PLUGINS_ELSEWHERE.items():
        if choice in args and importlib.util.find_spec(plugin) is None:
            pytest.skip(f"{choice} is a plugin lrexp does not install ({plugin})")
    overrides = [a for a in args if not a.startswith("-") and a != "job" and not MADE_BY_ANOTHER.search(a)]
    for job in expand(overrides):
        with initialize_config_module("lrexp.conf", version_base="1.3"):
            cfg = compose("config", overrides=job, return_hydra_config=True)
        assert OmegaConf.select(cfg, "run.steps") is not None


OTHER_MODULES = sorted({m for m, _ in COMMANDS if m != "lrexp"})


@pytest.mark.slow
@pytest.mark.parametrize("module", OTHER_MODULES)
def test_every_documented_flag_of_lrexps_other_commands_exists(module, tmp_path):
    """`python -m lrexp.report DIR --group-by KEY`: every flag a page gives is one the command takes."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    flags = {w.split("=", 1)[0] for m, args in COMMANDS if m == module for w in args if w.startswith("--")}
    for flag in flags:
        assert flag in done.stdout, f"python -m {module} {flag}: not in its --help"


# --- the public names -------------------------------------------------------------------------------

PUBLIC = [
    "lrexp.schedule.build",
    "lrexp.schedule.Schedule",
    "lrexp.schedule.PiecewiseLinear",  # a _target_ in the configs lrexp.predict writes
    "lrexp.recorder.Recorder",
    "lrexp.callbacks.ComparisonReport",
    "lrexp.callbacks.WritableOutput",
    "lrexp.integrations.transformers.LrexpCallback",
    "lrexp.integrations.lightning.LrexpCallback",
    "lrexp.tasks.Task",
    "lrexp.tasks.build_task",
    "lrexp.record.Metric",
    "lrexp.record.Goal",
    "lrexp.runs.find_runs",
    "lrexp.compare.compare",
    "lrexp.report.write_report",
    "lrexp.report.main",
    "lrexp.lr_find.main",
    "lrexp.preview.main",
    "lrexp.predict.main",
    "lrexp.budget.main",
    "lrexp.wandb_report.main",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_a_public_name_is_where_users_find_it(name):
    module, _, attribute = name.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_every_target_in_the_configs_resolves():
    """Every `_target_` of conf/ (and of tests/conf) names an object that exists: nothing a config says moved."""
    from hydra.utils import get_object

    targets = set()
    for path in [*(ROOT / "conf").rglob("*.yaml"), *(ROOT / "tests" / "conf").rglob("*.yaml")]:
        targets |= set(re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text(), flags=re.M))
    assert len(targets) > 30
    for target in sorted(targets):
        assert callable(get_object(target)), target


def test_every_page_the_code_points_to_exists():
    """Comments, docstrings and --help name docs/PAGE.md where the explanation lives: none may dangle."""
    named = set()
    for folder in ("lrexp", "hydra_plugins", "scripts", "conf", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".sh"):
                named |= set(re.findall(r"docs/([a-z][a-z-]*\.md)", path.read_text()))
    assert len(named) >= 8
    assert sorted(n for n in named if not (DOCS / n).is_file()) == []
