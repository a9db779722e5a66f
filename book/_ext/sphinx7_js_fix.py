"""Keep Sphinx 7 from writing inline <script> blocks twice (loaded by _config.yml).

Jupyter Book 1 needs Sphinx 7. There, an extension that adds an inline script after the HTML
builder has started (`app.add_js_file(None, body=...)`, as sphinx-thebe and sphinx-togglebutton
do) gets it written twice: once under the name None and once under ''. The second copy of
sphinx-thebe's `const THEBE_JS_URL` is a JavaScript error on every page. Sphinx 8.2 fixed this
(sphinx-doc/sphinx#13402) by passing '' in both places; this extension does the same for
Sphinx 7, before any other extension adds a script.
"""

from sphinx.application import Sphinx


def _pass_empty_name_for_inline_scripts(app: Sphinx) -> None:
    add = getattr(app.builder, "add_js_file", None)
    if add is None:  # not an HTML builder
        return

    def add_js_file(filename, **kwargs):
        add(filename or "", **kwargs)

    app.builder.add_js_file = add_js_file


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _pass_empty_name_for_inline_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
