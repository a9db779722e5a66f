"""Re-read, and so re-execute, every notebook on every build (loaded by _config.yml).

Sphinx re-reads only the sources that changed since the last build, and Jupyter Book executes a
notebook only when Sphinx reads it. A notebook whose source did not change would then keep outputs
computed by older package code or under another profile (MVIT_PROFILE). Marking every notebook as
outdated makes each build, `make book` or `jupyter-book build book/`, execute all of them.
"""

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment


def _every_notebook(app: Sphinx, env: BuildEnvironment, added, changed, removed) -> list[str]:
    return sorted(doc for doc in env.found_docs if str(env.doc2path(doc)).endswith(".ipynb"))


def setup(app: Sphinx) -> dict:
    app.connect("env-get-outdated", _every_notebook)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
