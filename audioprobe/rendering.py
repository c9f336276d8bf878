"""Render the page source (a Jupyter percent script) to one self-contained HTML file.

Quarto renders it when ``quarto`` is on PATH; otherwise jupytext reads it, nbclient executes it
and nbconvert writes the HTML with images embedded, no script or style loaded from the network
and the same floating table of contents Quarto gives. The source finds its inputs through the
``AUDIOPROBE_REPORT_INPUTS`` environment variable: a JSON object ``{"files": {...}, "config":
{...}}``, read back by :func:`audioprobe.results.load`.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from audioprobe.torch_env import TORCH_ENV

INPUTS_VARIABLE = "AUDIOPROBE_REPORT_INPUTS"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# nbconvert's lab template with the blocks that load require.js, MathJax and mermaid from a CDN
# left empty: the report uses none of them, and it must open offline.
OFFLINE_TEMPLATE = "audioprobe-offline.html.j2"
OFFLINE_TEMPLATE_SOURCE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


PATH_KEYS = ("path", "benchmark", "log")


def _absolute(value):
    """A path, list of paths or list of records with its paths (``PATH_KEYS``) made absolute;
    the records' keys (dataset, model, probe, rule, job) stay as they are."""
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    if isinstance(value, dict):
        return {k: str(Path(v).resolve()) if k in PATH_KEYS else v for k, v in value.items()}
    return str(Path(value).resolve())


def render(source: Path, output: Path, files: dict, config: dict) -> None:
    """Execute ``source`` on ``files`` and write the HTML report to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    inputs = {"files": {k: _absolute(v) for k, v in files.items()}, "config": config,
              "workflow": str(Path.cwd())}
    python_path = [str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = TORCH_ENV | os.environ | {
        INPUTS_VARIABLE: json.dumps(inputs), "PYTHONPATH": os.pathsep.join(python_path)}
    if shutil.which("quarto"):
        _render_with_quarto(source, output, env)
    else:
        _render_with_nbconvert(source, output, env)


def _render_with_quarto(source: Path, output: Path, env: dict) -> None:
    """Render a copy of the source in a scratch folder, so nothing is written beside it."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source.name
        shutil.copy(source, copy)
        subprocess.run(["quarto", "render", copy.name, "--to", "html", "--execute",
                        "--output", output.name],
                       cwd=tmp, env=env | {"QUARTO_PYTHON": sys.executable}, check=True)
        shutil.move(Path(tmp) / output.name, output)


def front_matter_to_title(notebook) -> str:
    """Replace the Quarto front matter cell (YAML between ``---`` lines) with a title heading;
    return the title."""
    cell = notebook.cells[0]
    lines = cell.source.strip().splitlines()
    if cell.cell_type != "markdown" or lines[:1] != ["---"] or "---" not in lines[1:]:
        raise ValueError("the report source must start with a markdown cell of YAML front matter")
    meta = yaml.safe_load("\n".join(lines[1:lines.index("---", 1)]))
    title = meta.get("title", "Report")
    cell.source = f"# {title}" + (f"\n\n{meta['subtitle']}" if meta.get("subtitle") else "")
    return title


HEADING = re.compile(r'<h([23])\s+id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)


def table_of_contents(page: str) -> str:
    """A ``<nav id="TOC">`` of the page's second- and third-level headings (with ids), nested
    as Quarto's table of contents is."""
    items, open_sub = [], False
    for level, anchor, inner in HEADING.findall(page):
        text = html.escape(html.unescape(re.sub(r"<[^>]+>", "", inner)).replace("¶", "").strip())
        link = f'<a href="#{anchor}">{text}</a>'
        if level == "2":
            items.append(("</ul></li>" if open_sub else "</li>") if items else "")
            items.append(f"<li>{link}")
            open_sub = False
        else:
            items.append("" if open_sub else "<ul>")
            items.append(f"<li>{link}</li>")
            open_sub = True
    if items:
        items.append("</ul></li>" if open_sub else "</li>")
    return ('<nav id="TOC" role="doc-toc" aria-label="Contents"><h2 id="toc-title">Contents'
            f'</h2><ul>{"".join(items)}</ul></nav>')


def _render_with_nbconvert(source: Path, output: Path, env: dict) -> None:
    import jupytext
    from jinja2 import DictLoader
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    notebook = jupytext.read(source)
    title = front_matter_to_title(notebook)
    # the kernel talks over Unix sockets in a private scratch folder, not over loopback TCP
    with tempfile.TemporaryDirectory() as sockets:
        kernel = Config({"KernelManager": {"transport": "ipc",
                                           "ip": str(Path(sockets) / "kernel")}})
        client = NotebookClient(notebook, timeout=1800, kernel_name="python3", config=kernel,
                                resources={"metadata": {"path": str(output.parent.resolve())}})
        client.execute(env=env)
    exporter = HTMLExporter(extra_loaders=[DictLoader({OFFLINE_TEMPLATE: OFFLINE_TEMPLATE_SOURCE})],
                            template_file=OFFLINE_TEMPLATE, exclude_input=True, embed_images=True)
    page, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    body = re.search(r"<body[^>]*>", page)
    page = page[:body.end()] + table_of_contents(page) + page[body.end():]
    output.write_text(page)
