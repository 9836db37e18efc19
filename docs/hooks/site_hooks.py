"""mkdocs hooks that build diffgrm's documentation site offline (``make docs``; configured in mkdocs.yml).

- The six tutorial notebooks (``notebooks/NN_name.ipynb``) are executed during the build in a fresh
  kernel, from a ``notebooks/`` folder as they expect, in quick mode (``DIFFGRM_QUICK=1`` unless the
  environment sets it), and any failing cell stops the build. mkdocs-jupyter then renders the executed
  copies. They run in a scratch mirror of the repository (every top-level entry linked, ``notebooks/``
  copied, ``runs/`` new and empty), so ``../runs/notebooks`` starts empty on every build: the site
  shows what a fresh clone gets, and a build neither reuses nor disturbs the runs of a test run or of
  a person working in the notebooks.
- Their plotly figures render without a network: each figure output (``application/vnd.plotly.v1+json``,
  which nbconvert's HTML drops) gets a ``text/html`` twin made by ``plotly.io.to_html`` without
  plotly.js, and the notebook pages load the ``plotly.min.js`` of the installed plotly package, shipped
  with the site under ``assets/javascripts/``. No page loads anything from a CDN.
- One API reference page per module of the ``diffgrm`` package (mkdocstrings), found by listing
  the package, so a new module gets its page without touching mkdocs.yml.
- Equations (``pymdownx.arithmatex``) are drawn by MathJax 3 (its one-file SVG build, from the
  ``django-static-mathjax`` package's files), shipped with the site and loaded only by pages with maths.

- The static explorer of the shipped demo runs (``diffgrm export``: the explorer's views of
  ``DIFFGRM_DOCS_EXPORT_USERS`` test users, 100 by default) is written during the build and ships with
  the site under ``explorer/`` (``explorer/index.html``, linked from the explorer page), so the site
  lets a reader step through real decodings with no Python and no server.

``DIFFGRM_DOCS_EXECUTE=0`` renders the notebooks without running them (code only, for editing the
site quickly); ``DIFFGRM_DOCS_EXECUTE=00_quickstart,01_pse`` runs only the named ones (the test does,
since ``tests/test_notebooks.py`` runs all six already).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.utils import get_relative_url

log = logging.getLogger("mkdocs.hooks.diffgrm")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
PACKAGE = ROOT / "diffgrm"
PLOTLY_JS = "assets/javascripts/plotly.min.js"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
MATHJAX_JS = "assets/javascripts/mathjax/tex-svg.js"
MATHJAX_CONFIG = ("<script>window.MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']], displayMath: [['\\\\[', '\\\\]']], "
                  "processEscapes: false}, options: {ignoreHtmlClass: '.*', processHtmlClass: 'arithmatex'}, "
                  "svg: {fontCache: 'global'}};</script>")
NOTEBOOK_MATHJAX_CONFIG = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$']], displayMath: [['$$', '$$']]}, "
                           "options: {processHtmlClass: 'jp-MarkdownOutput', ignoreHtmlClass: 'jp-OutputArea|highlight'}, "
                           "svg: {fontCache: 'global'}};</script>")

_workdir: Path | None = None
_modules: list[str] = []  # the API pages of this build, listed once (on_config) for the nav and the files


def notebook_names() -> list[str]:
    """The tutorial notebooks, in reading order (``00_quickstart.ipynb`` ...)."""
    return sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def api_modules() -> list[str]:
    """The modules of the package, ``config`` for ``diffgrm.config`` (a subpackage such as ``viz`` is one page)."""
    names = [p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")]
    names += [p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    return sorted(names)


def on_config(config):
    """Append the notebook and API sections to the nav that mkdocs.yml starts."""
    _modules[:] = api_modules()
    nav = list(config.nav or [])
    nav.append({"Notebooks": [f"notebooks/{name}" for name in notebook_names()]})
    nav.append({"API reference": [{f"diffgrm.{m}": f"api/{m}.md"} for m in _modules]})
    config.nav = nav
    return config


def plotly_html(figure: dict, div_id: str) -> str:
    """A figure output as a div plus the script that draws it with the page's global ``Plotly``."""
    import plotly.io as pio

    height = (figure.get("layout") or {}).get("height")
    return pio.to_html(
        {"data": figure.get("data", []), "layout": figure.get("layout", {})},
        config=figure.get("config"), include_plotlyjs=False, full_html=False, validate=False, div_id=div_id,
        default_width="100%", default_height=f"{height}px" if height else "450px",
    )


def add_plotly_html(nb, stem: str) -> int:
    """Give every plotly output of ``nb`` a ``text/html`` rendering; returns how many there were."""
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            figure = output.get("data", {}).get(PLOTLY_MIME)
            if figure is not None:
                count += 1
                output["data"]["text/html"] = plotly_html(figure, f"{stem}-figure-{count}")
    return count


def mirror_repository(scratch: Path) -> Path:
    """``scratch/<repo>``: the repository's top-level entries as links, ``notebooks/`` copied, ``runs/`` empty.

    A notebook's relative paths (``../runs/notebooks``, ``../bench/results``, ``../../shared``) mean
    what they mean in the repository, except that its runs go to the new ``runs/``.
    """
    repo = scratch / ROOT.name
    repo.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("runs", "notebooks", "site"):
            (repo / entry.name).symlink_to(entry)
    shutil.copytree(NOTEBOOKS, repo / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (repo / "runs").mkdir()
    if (ROOT.parent / "shared").exists():
        (scratch / "shared").symlink_to(ROOT.parent / "shared")
    return repo / "notebooks"


def execute_notebook(source: Path, target: Path, cwd: Path | None) -> None:
    """Write ``source`` to ``target``, executed from ``cwd``, its plotly figures drawable (``cwd=None``: as is)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(source, as_version=4)
    if cwd is not None:
        env = {**os.environ, "DIFFGRM_QUICK": os.environ.get("DIFFGRM_QUICK", "1")}
        client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=False,
                                resources={"metadata": {"path": str(cwd)}})
        t0 = time.perf_counter()
        try:
            client.execute(env=env)
        except Exception as err:  # CellExecutionError shows the cell and its traceback: the build stops
            raise PluginError(f"notebooks/{source.name} failed while building the docs:\n{err}") from err
        figures = add_plotly_html(nb, source.stem)
        log.info("executed %s in %.0f s (%d plotly figures)", source.name, time.perf_counter() - t0, figures)
    nbformat.write(nb, target)


def _cleanup() -> None:
    global _workdir
    if _workdir is not None:
        shutil.rmtree(_workdir, ignore_errors=True)
        _workdir = None


@event_priority(100)  # before mkdocs-jupyter's on_files, which claims the .ipynb files
def on_files(files: Files, config) -> Files:
    global _workdir
    _cleanup()
    _workdir = Path(tempfile.mkdtemp(prefix="diffgrm-docs-"))  # executed notebooks/ and the scratch/ mirror
    (_workdir / "notebooks").mkdir()
    (_workdir / "scratch").mkdir()
    wanted = os.environ.get("DIFFGRM_DOCS_EXECUTE", "1")
    names = notebook_names()
    run = set(names) if wanted == "1" else set() if wanted == "0" else {f"{n.strip()}.ipynb" for n in wanted.split(",")}
    unknown = run - set(names)
    if unknown:
        raise PluginError(f"DIFFGRM_DOCS_EXECUTE names no notebook: {sorted(unknown)} (choose among {names})")
    cwd = mirror_repository(_workdir / "scratch") if run else None
    for name in names:
        execute_notebook(NOTEBOOKS / name, _workdir / "notebooks" / name, cwd if name in run else None)
        # a plain File, not File.generated: mkdocs-jupyter's wrapper only sees a file's src_dir
        files.append(File(f"notebooks/{name}", str(_workdir), config.site_dir, config.use_directory_urls))
    for module in _modules:
        page = f"# `diffgrm.{module}`\n\n::: diffgrm.{module}\n"
        files.append(File.generated(config, f"api/{module}.md", content=page))
    for file in explorer_files(_workdir, config):
        files.append(file)
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    files.append(File.generated(config, PLOTLY_JS, abs_src_path=str(plotly_js)))
    files.append(File.generated(config, MATHJAX_JS, abs_src_path=str(mathjax_js())))
    return files


EXPLORER = "explorer"
"""Where the site keeps the static explorer of the demo runs (``explorer/index.html``)."""


def explorer_files(workdir: Path, config) -> list[File]:
    """The demo runs' static explorer (``diffgrm export``), written into ``workdir`` and listed as the
    site's files under :data:`EXPLORER`: the demo runs are installed from the package into ``workdir``
    (their users read from MovieLens-100K, fetched by the set-up), nothing is trained."""
    from diffgrm import demo
    from diffgrm.errors import DiffGRMError
    from diffgrm.export import export

    users = int(os.environ.get("DIFFGRM_DOCS_EXPORT_USERS", "100"))
    t0 = time.perf_counter()
    try:
        run = demo.ensure_demo_run(workdir / "runs" / "ml-tiny", progress=False)
        summary = export(run, workdir / EXPLORER, users=users)
    except DiffGRMError as err:
        raise PluginError(f"the site's static explorer could not be exported: {err}") from err
    log.info("exported the demo runs' explorer (%d users, %.1f MB) in %.0f s", summary.users, summary.bytes / 1e6,
             time.perf_counter() - t0)
    return [File(str(path.relative_to(workdir)), str(workdir), config.site_dir, config.use_directory_urls)
            for path in sorted((workdir / EXPLORER).rglob("*")) if path.is_file()]


def mathjax_js() -> Path:
    """MathJax 3's one-file TeX-to-SVG build, from the installed ``django-static-mathjax`` (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    path = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5" / "tex-svg.js" if spec else None
    if path is None or not path.is_file():
        raise PluginError("the docs draw their equations with MathJax from the django-static-mathjax package: "
                          "pip install -e '.[docs]'")
    return path


_FIGURE = re.compile(r"<!--\s*plotly-figure:\s*(\S+)\s*-->")
_DIAGNOSTICS = re.compile(r"<!--\s*demo-diagnostics:\s*(\w+)(?:\s+(\w+))?\s*-->")
_figure_pages: set[str] = set()


def demo_diagnostics_figure(name: str, argument: str | None) -> dict:
    """A ``diffgrm.viz`` diagnostics figure of the shipped demo runs (their ``diagnostics.json``, DiffGRM
    and AR side by side; ``order_figure`` takes the DiffGRM run's alone), as plotly JSON."""
    import json

    from diffgrm import demo, viz
    from diffgrm.diagnose import read_diagnostics

    runs = demo.shipped_runs()
    if runs is None:
        raise PluginError("the package ships no demo runs: the diagnostics figures have nothing to draw")
    diags = {"DiffGRM": read_diagnostics(runs["diffgrm"]), "AR": read_diagnostics(runs["ar"])}
    build = getattr(viz, name, None)
    if build is None or not name.endswith("_figure"):
        raise PluginError(f"demo-diagnostics: no figure {name!r} in diffgrm.viz")
    fig = build(diags["DiffGRM"]) if name == "order_figure" else (
        build(diags, by=argument) if argument else build(diags))
    return json.loads(fig.to_json())


def on_page_markdown(markdown: str, page, config, files) -> str:
    """``<!-- plotly-figure: bench/results/NAME.json -->`` in a page: that plotly figure (JSON written by a
    bench script, path from the repository root), drawn by the site's own plotly.js."""

    def figure(match: re.Match) -> str:
        path = ROOT / match.group(1)
        if not path.is_file():
            raise PluginError(f"{page.file.src_uri} shows {match.group(1)}, which does not exist")
        import json

        _figure_pages.add(page.file.src_uri)
        return plotly_html(json.loads(path.read_text()), f"figure-{path.stem}")

    def diagnostics(match: re.Match) -> str:
        _figure_pages.add(page.file.src_uri)
        return plotly_html(demo_diagnostics_figure(match.group(1), match.group(2)),
                           f"figure-{match.group(1)}-{match.group(2) or 'runs'}")

    markdown = _FIGURE.sub(figure, markdown)
    markdown = _DIAGNOSTICS.sub(diagnostics, markdown)
    if page.file.src_uri == "index.md":  # the README, included here: its pictures' paths start at the repository
        readme = (ROOT / "README.md").read_text().replace("](docs/images/", "](images/")
        markdown = markdown.replace('--8<-- "README.md"', readme)
    return markdown


_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:\w+\.)*(\w+)</code>")


def on_page_content(html: str, page, config, files) -> str:
    """API pages: Sphinx roles in docstrings (:class:`~diffgrm.trace.DenoisingTrace`) print as plain code."""
    if page.file.src_uri.startswith("api/"):
        html = _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
    return html


# nbconvert's page template loads MathJax and a mermaid loader from CDNs: both go, and the notebooks'
# equations are drawn by the MathJax shipped with the site.
_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_MERMAID = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>", re.S)


def on_post_page(output: str, page, config) -> str:
    if 'class="arithmatex"' in output:  # a page with equations: the site's own MathJax draws them
        scripts = f'{MATHJAX_CONFIG}\n<script src="{get_relative_url(MATHJAX_JS, page.url)}"></script>'
        output = output.replace("</head>", f"{scripts}\n</head>", 1)
    if page.file.src_uri in _figure_pages:  # a page with bench figures: plotly.js, nothing else to clean
        script = f'<script src="{get_relative_url(PLOTLY_JS, page.url)}"></script>'
        return output.replace("</head>", f"{script}\n</head>", 1)
    if not page.file.src_uri.endswith(".ipynb"):
        return output
    output = _MERMAID.sub("", _MATHJAX.sub("", output))
    script = f'<script src="{get_relative_url(PLOTLY_JS, page.url)}"></script>'
    if "$" in output:  # the notebooks' equations ($...$, $$...$$ in markdown cells): the site's own MathJax
        script += f'\n{NOTEBOOK_MATHJAX_CONFIG}\n<script src="{get_relative_url(MATHJAX_JS, page.url)}"></script>'
    return output.replace("</head>", f"{script}\n</head>", 1)


def on_post_build(config) -> None:
    _cleanup()


def on_build_error(error) -> None:
    _cleanup()

