"""Launch and repository buttons from one repository setting (loaded by _config.yml).

Jupyter Book turns the ``repository`` section of ``_config.yml`` into sphinx-book-theme's ``repository_url``,
``repository_branch`` and ``path_to_docs`` theme options; ``MVIT_BOOK_REPO`` / ``MVIT_BOOK_BRANCH`` override them
(``mvit.booktools.book_repository``, the same setting the notebooks' Colab install cell is written from). When the
setting names a GitHub repository, this extension switches on the repository button and the launch buttons listed
under ``launch_buttons``; when it is empty or a placeholder (``YOUR-ORG``, ``example.com``, ...), it removes them
all, so the site never links to a repository that does not exist. Any other URL stops the build with the fix.

It also defines the MyST substitution ``{{ book_repository }}`` for the pages' text: a link to the repository, or
a sentence saying that this build has none.
"""

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError
from sphinx.util import logging

from mvit.booktools import REPO_VARIABLE, RepositoryError, book_repository

logger = logging.getLogger(__name__)
REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button")


def _apply_repository_setting(app: Sphinx, config: Config) -> None:
    options = dict(config.html_theme_options)
    try:
        repository = book_repository(
            options.get("repository_url") or "",
            options.get("repository_branch") or "",
            options.get("path_to_docs") or "",
        )
    except RepositoryError as err:
        raise ConfigError(str(err)) from None
    substitutions = dict(getattr(config, "myst_substitutions", None) or {})
    if repository is None:
        for key in ("repository_url", "repository_branch", "path_to_docs"):
            options.pop(key, None)
        options.update({key: False for key in REPOSITORY_BUTTONS}, launch_buttons={})
        substitutions["book_repository"] = (
            f"not set for this build ({REPO_VARIABLE} unset, `repository.url` in `_config.yml` empty or a "
            "placeholder), so this copy of the site has no launch or repository buttons"
        )
        logger.info(f"no public repository set ({REPO_VARIABLE} / repository.url): no launch or repository buttons")
    else:
        options.update(
            repository_url=repository.url,
            repository_branch=repository.branch,
            path_to_docs=repository.path_to_book,
            use_repository_button=True,
        )
        substitutions["book_repository"] = (
            f"[{repository.owner}/{repository.name}]({repository.url}) (branch `{repository.branch}`)"
        )
        logger.info(f"launch and repository buttons for {repository.url} ({repository.branch})")
    config.html_theme_options = options
    config.myst_substitutions = substitutions


def setup(app: Sphinx) -> dict:
    # Before sphinx-book-theme and the HTML builder read the theme options (builder-inited).
    app.connect("config-inited", _apply_repository_setting)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
