"""Publishing: the GitHub workflow, the Binder configuration, the citation file and the release.

Everything here is offline. The workflow and CITATION.cff are validated with check-jsonschema
against the schemas it vendors (``--builtin-schema``; no download), and every version or pin that
appears in more than one file is read from where it is defined (the Makefile's TORCH_PINS,
pyproject.toml, ``gainlib.__version__``, _config.yml), never written down again here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import gainlib

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

yaml = pytest.importorskip("yaml")  # PyYAML comes with the `book` extra (jupyter-book)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
BINDER = ROOT / "binder"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _check_jsonschema(builtin: str, *files: Path) -> None:
    """Validate files against a schema vendored in check-jsonschema, with the network made
    unreachable (any attempt to download would fail instead of hanging or passing)."""
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail("check-jsonschema is missing: it is in the `test` extra (pip install -e '.[test]')")
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": ""}
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", builtin, *map(str, files)],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"{builtin}:\n{result.stdout}\n{result.stderr}"


def _requirements(lines) -> dict[str, Requirement]:
    """Requirements by canonical name; comments, blank lines and pip options are skipped."""
    found = {}
    for line in lines:
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")):
            req = Requirement(line)
            found[canonicalize_name(req.name)] = req
    return found


def _torch_pins() -> dict[str, Requirement]:
    """The Makefile's TORCH_PINS (its default, whatever the environment overrides)."""
    match = re.search(r"^TORCH_PINS\s*\??=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile defines no TORCH_PINS"
    return _requirements(match.group(1).split())


def _pyproject_requirements() -> dict[str, list[Requirement]]:
    """Every requirement pyproject.toml states (dependencies and extras), by canonical name."""
    project = PYPROJECT["project"]
    found: dict[str, list[Requirement]] = {}
    for line in [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]:
        req = Requirement(line)
        found.setdefault(canonicalize_name(req.name), []).append(req)
    return found


def _load_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} does not parse to a mapping"
    return data


def _repository_url() -> str:
    return _load_yaml(ROOT / "_config.yml")["repository"]["url"]


# --- the GitHub Actions workflow ---------------------------------------------------------------

def test_workflow_is_a_valid_github_workflow():
    _check_jsonschema("vendor.github-workflows", *sorted((ROOT / ".github" / "workflows").glob("*.y*ml")))


def _steps(workflow: dict) -> list[tuple[str, dict]]:
    return [(name, step) for name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def _book_html_folder() -> str:
    """Where `make book` writes the HTML, as book/build.py computes it."""
    spec = importlib.util.spec_from_file_location("_book_build", ROOT / "book" / "build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # its dataclass looks its module up there
    spec.loader.exec_module(build)
    return build.html_dir("default").relative_to(ROOT).as_posix()


def test_workflow_tests_builds_and_deploys_the_book():
    workflow = _load_yaml(WORKFLOW)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and triggers.get("schedule"), "not run on every push and on a schedule"
    steps = _steps(workflow)
    runs = [step.get("run", "").strip() for _, step in steps]
    # The README's test command as CI runs it (chromium, then `make test`), then its build command.
    assert "bash .ci/run" in runs and "make book" in runs, runs
    assert runs.index("bash .ci/run") < runs.index("make book")
    assert "make test" in (ROOT / ".ci" / "run").read_text()

    uploads = [(job, s) for job, s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(uploads) == 1, "the HTML is not uploaded as a Pages artifact"
    assert uploads[0][1]["with"]["path"] == _book_html_folder()

    deploy = [job for job, s in steps if s.get("uses", "").startswith("actions/deploy-pages@")]
    assert len(deploy) == 1, "the book is never deployed"
    job = workflow["jobs"][deploy[0]]
    assert uploads[0][0] in ([job["needs"]] if isinstance(job["needs"], str) else job["needs"])
    assert job.get("if") == "github.ref == 'refs/heads/main'", "deployed from branches other than main"
    assert job["permissions"] == {"pages": "write", "id-token": "write"}


def test_workflow_caches_pip_downloads_and_runs_a_supported_python():
    workflow = _load_yaml(WORKFLOW)
    job = workflow["jobs"]["test-and-build"]
    caches = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert caches and caches[0]["with"]["path"] == job["env"]["PIP_CACHE_DIR"]
    assert job["env"]["CI"] == "true"  # the browser tests fail instead of skipping
    image = job["container"]
    version = re.match(r"python:(\d+\.\d+)-", image)
    assert version, f"the job's container {image!r} is not a Debian python image"
    assert version.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"])


# --- Binder (the book's launch buttons) --------------------------------------------------------

def test_binder_pins_the_makefiles_torch_pair_and_agrees_with_pyproject():
    binder = _requirements((BINDER / "requirements.txt").read_text().splitlines())
    pins = _torch_pins()
    assert set(pins) == {"torch", "torchvision"}
    for name, pin in pins.items():
        assert name in binder, f"binder/requirements.txt does not install {name}"
        assert str(binder[name].specifier) == str(pin.specifier), (
            f"binder/requirements.txt has {binder[name]}, the Makefile's TORCH_PINS {pin}")
    # Whatever else Binder installs directly must allow what pyproject.toml asks for (same pin).
    declared = _pyproject_requirements()
    for name, req in binder.items():
        for wanted in declared.get(name, []):
            for pinned in (s.version for s in req.specifier if s.operator == "=="):
                assert wanted.specifier.contains(pinned, prereleases=True), (
                    f"binder pins {req}, pyproject.toml requires {wanted}")


def test_binder_installs_gainlib_with_the_book_extra_on_a_supported_python():
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    installs = re.findall(r"pip install[^\n]*?-e\s+\"?\.\[([\w,-]+)\]\"?", post_build.read_text())
    assert installs, "binder/postBuild does not install this checkout (pip install -e '.[...]')"
    extras = set(installs[0].split(","))
    assert "book" in extras and extras <= set(PYPROJECT["project"]["optional-dependencies"])
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-\d+\.\d+", runtime), runtime
    assert runtime.removeprefix("python-") in SpecifierSet(PYPROJECT["project"]["requires-python"])


# --- citation, license, changelog --------------------------------------------------------------

def test_citation_file_is_valid_cff():
    _check_jsonschema("vendor.citation-file-format", ROOT / "CITATION.cff")


def _bibtex_entry(key: str) -> dict[str, str]:
    """The fields of one entry of book/references.bib (flat `field = {value}` lines)."""
    text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    match = re.search(rf"@\w+\{{{re.escape(key)},(.*?)\n\}}", text, re.DOTALL)
    assert match, f"book/references.bib has no entry {key}"
    return {k.lower(): v for k, v in re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", match.group(1), re.MULTILINE)}


def test_citation_matches_the_project_and_the_books_bibliography():
    cff = _load_yaml(ROOT / "CITATION.cff")
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == gainlib.__version__
    assert cff["license"] == PYPROJECT["project"]["license"]
    assert cff["repository-code"] == _repository_url() == PYPROJECT["project"]["urls"]["Repository"]
    assert cff["url"] == PYPROJECT["project"]["urls"]["Documentation"]
    # The paper, journal version and conference version, as the book's bibliography cites them.
    references = {ref["type"]: ref for ref in cff["references"]}
    for key, kind in (("li2019gain", "article"), ("li2018gain", "conference-paper")):
        bib, ref = _bibtex_entry(key), references[kind]
        assert ref["title"] == bib["title"], key
        assert str(ref["year"]) == bib["year"], key
        assert f"{ref['start']}--{ref['end']}" == bib["pages"], key
        assert ref.get("doi") == bib.get("doi"), key
        names = [f"{a['family-names']}, {a['given-names']}" for a in ref["authors"]]
        assert " and ".join(names) == bib["author"], key


def test_license_file_is_the_mit_license_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def test_changelog_names_the_current_version_first():
    versions = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    released = [v for v in versions if v.lower() != "unreleased"]
    assert released and released[0] == gainlib.__version__, (
        f"CHANGELOG.md's newest release is {released[:1]}, gainlib.__version__ is {gainlib.__version__}")


# --- the release: sdist and wheel --------------------------------------------------------------

# Modules that only the extras bring (data, test, book): the wheel must import without them.
EXTRA_MODULES = ("scipy", "matplotlib", "pandas", "ipywidgets", "IPython", "papermill", "nbformat",
                 "jupyter_book", "pytest", "hypothesis", "pytorch_grad_cam", "torchmetrics", "yaml")

FRESH_ENV_CHECK = f"""
import importlib, importlib.metadata, importlib.util, pkgutil, sys
import gainlib
assert gainlib.__file__.startswith(sys.prefix), f"gainlib imported from {{gainlib.__file__}}"
assert importlib.metadata.version("gainlib") == gainlib.__version__
modules = [m.name for m in pkgutil.walk_packages(gainlib.__path__, "gainlib.")]
for name in modules:
    importlib.import_module(name)
present = [m for m in {EXTRA_MODULES!r} if importlib.util.find_spec(m) is not None]
assert not present, f"the fresh environment has the extras' modules {{present}}"
import torch
torch.manual_seed(0)
model = gainlib.GAIN.from_name("small_cnn", num_classes=3)
batch = {{"image": torch.randn(2, 3, 32, 32), "labels": torch.tensor([[1.0, 0, 0], [0, 1, 1]])}}
losses = model.stream_losses(batch)
losses["total"].backward()
assert torch.isfinite(losses["total"]), losses
print("gainlib", gainlib.__version__, "imports", len(modules), "modules; GAIN step ok")
"""


def _runtime_closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions that ``requirements`` need, transitively: each requirement's
    environment marker is evaluated for this interpreter (no extras unless asked for), and every
    installed version must satisfy its requirement."""
    environment = default_environment()
    todo = [(Requirement(r), "") for r in requirements]
    found: dict[str, metadata.Distribution] = {}
    followed: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({**environment, "extra": extra}):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req} is not installed in this environment")
        assert req.specifier.contains(dist.version, prereleases=True), f"{req}: {dist.version} installed"
        name = canonicalize_name(req.name)
        found[name] = dist
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) not in followed:
                followed.add((name, wanted))
                todo.extend((Requirement(r), wanted) for r in dist.requires or [])
    return found


def _link_distributions(dists, site_packages: Path) -> None:
    """Symlink each distribution's top-level files (packages, modules, .dist-info) into
    ``site_packages``. Namespace folders shared by several distributions are linked once."""
    for dist in dists:
        assert dist.files, f"{dist.metadata['Name']} has no RECORD to take its files from"
        for top in {f.parts[0] for f in dist.files} - {"..", "__pycache__"}:
            target = Path(dist.locate_file(top))
            link = site_packages / top
            if target.exists() and not link.exists():
                link.symlink_to(target, target_is_directory=target.is_dir())


def _copy_of_the_repository(destination: Path) -> Path:
    """The repository's files as a checkout holds them, without what builds and runs leave."""
    anywhere = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    at_root = {".git", ".venv", "_build", "build", "dist", "data", "runs", ".pytest_cache", ".hypothesis"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return anywhere(folder, names) | (at_root & set(names) if Path(folder) == ROOT else set())

    return Path(shutil.copytree(ROOT, destination, ignore=ignore, symlinks=True))


@pytest.mark.slow
def test_sdist_and_wheel_build_install_in_a_fresh_venv_and_import_without_the_extras(tmp_path):
    """``python -m build`` makes the sdist and builds the wheel from it; the wheel installs with
    ``--no-deps`` into a new virtual environment holding only gainlib's runtime requirements, where
    every module imports and a GAIN step runs, while none of the extras' modules is importable.

    Offline and without the extras, by construction: the build runs without isolation (this
    environment has setuptools, from the `test` extra), on a copy of the repository so that
    nothing is written into the working tree. The new environment is made with ``venv
    --without-pip``, and its site-packages receives symlinks to exactly the installed distributions
    that the wheel's own ``Requires-Dist`` lines need, followed transitively through their
    metadata (torch with its own dependencies, torchvision, numpy, pillow, tqdm): nothing is
    downloaded, and nothing outside that closure, in particular none of the `book`, `test` and
    `data` extras, can be imported (``--system-site-packages`` or a ``.pth`` file pointing at this
    environment would expose all of them). pip installs the wheel with ``--python`` pointing at the
    new interpreter and ``--no-index --no-deps``. The import check runs with ``python -I`` from a
    temporary folder, so the repository's own ``gainlib/`` cannot be imported by accident.
    """
    source = _copy_of_the_repository(tmp_path / "src")
    dist_dir = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist_dir), "."],
                           cwd=source, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"python -m build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    (sdist,) = dist_dir.glob("gainlib-*.tar.gz")
    (wheel,) = dist_dir.glob("gainlib-*.whl")

    version = gainlib.__version__
    with tarfile.open(sdist) as tar:
        top = f"gainlib-{version}/"
        members = {m.removeprefix(top) for m in tar.getnames() if m.startswith(top)}
    for required in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "CITATION.cff",
                     "gainlib/__init__.py", "gainlib/data/protocol.py"):
        assert required in members, f"the sdist lacks {required}"
    stray = sorted(m for m in members if m.split("/")[0] in ("tests", "notebooks", "book", ".venv", "_build"))
    assert not stray, f"the sdist carries files that are not the library's: {stray[:10]}"

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = HeaderParser().parsestr(zf.read(f"gainlib-{version}.dist-info/METADATA").decode())
    assert info["Version"] == version and info["License-Expression"] == "MIT"
    assert f"gainlib-{version}.dist-info/licenses/LICENSE" in names
    assert "gainlib/__init__.py" in names and "gainbook/cache.py" in names
    fixtures = sorted(n for n in names if n.startswith("tests/") or "tiny_voc" in n)
    assert not fixtures, f"the wheel ships test fixtures: {fixtures}"
    runtime = [r for r in info.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(runtime) == sorted(PYPROJECT["project"]["dependencies"])

    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    site_packages = Path(subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    _link_distributions(_runtime_closure(runtime).values(), site_packages)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
         "--disable-pip-version-check", "--no-input", str(wheel)],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, f"pip install failed:\n{install.stdout}\n{install.stderr}"

    check = subprocess.run([str(python), "-I", "-c", FRESH_ENV_CHECK], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert check.returncode == 0, f"the installed wheel failed:\n{check.stdout}\n{check.stderr[-4000:]}"
    assert "GAIN step ok" in check.stdout
