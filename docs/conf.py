"""Sphinx configuration of the shatterkit documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``tox -e docs``). Nothing is
fetched from the network: intersphinx is off, and the gallery and plot directives run on the CPU
with small settings (the whole build stays under 10 minutes on 2 cores).
"""

from __future__ import annotations

import os

from docutils.statemachine import StringList
from sphinx.directives.other import TocTree
from sphinx.util import docname_join

import shatterkit

os.environ.setdefault("MPLBACKEND", "Agg")

project = "shatterkit"
author = "the shatterkit developers"
copyright = "the shatterkit developers, BSD-3-Clause"
release = shatterkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "matplotlib.sphinxext.plot_directive",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples/README.rst"]
nitpicky = False  # no intersphinx (offline build): references to torch/xarray types cannot resolve

# -- autodoc, autosummary, numpydoc -------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc Parameters sections state the types
numpydoc_show_class_members = False  # the class template lists the members once

# -- MyST (the markdown reference pages) --------------------------------------------------------
myst_heading_anchors = 3  # GitHub-style anchors, so links written for GitHub work here too

# -- matplotlib plot directive (figures in the user guide, made by the library itself) ----------
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.figsize": (6.4, 3.2), "figure.dpi": 100}
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"

# -- sphinx-gallery -----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "doc_module": ("shatterkit",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"shatterkit": None},
    "min_reported_time": 1,
    "download_all_examples": False,
}

# -- optional pages ---------------------------------------------------------------------------


class OptionalTocTree(TocTree):
    """``.. optional-toctree::``: a toctree that leaves out entries whose document does not exist.

    For pages that other parts of the project write (the benchmark table, ``performance.md``): the
    site links them once they are there, and builds without warnings until then.
    """

    def run(self) -> list:
        found = self.env.found_docs
        kept = [e for e in self.content if e and docname_join(self.env.docname, e) in found]
        if not kept:
            return []
        self.content = StringList(kept)
        return super().run()


def setup(app) -> None:
    app.add_directive("optional-toctree", OptionalTocTree)


# -- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"shatterkit {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_context = {"default_mode": "light"}
