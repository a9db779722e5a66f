"""Author-year labels for the reference list, matching the author-year citations (loaded by _config.yml).

sphinxcontrib-bibtex's ``author_year`` reference style writes citations as "Goyal et al., 2017", but the list on
the references page is labelled by the formatting style's label style: with pybtex's ``alpha`` that gave
"[GDollarG+17]" (the accent of "Dollár" spelled out), a label no citation shows. This extension registers

- the pybtex label style ``author_year``: "Fan et al., 2021", "Loshchilov and Hutter, 2019", "Feichtenhofer,
  2020", with a letter after the year when two entries would otherwise get the same label ("Goyal et al., 2017a"
  and "Goyal et al., 2017b": the large-minibatch SGD paper and Something-Something);
- the pybtex formatting style ``author_year`` (``bibtex_default_style``): pybtex's ``unsrt`` entries with those
  labels, sorted by author, year and title;
- the reference style ``author_year_label`` (``bibtex_reference_style``): the ``author_year`` citations, with the
  year taken from the entry's label, so that a citation shows the same "2017a" as the list.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import join, node
from sphinx.application import Sphinx
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import GroupReferenceStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join2, post_text, pre_text, reference

NAME = "author_year"
SEPARATOR = ", "  # between the authors and the year, in the labels and in the citations


def _last_names(person) -> str:
    """ "Dollár" from ``Doll{\\'a}r``: the person's von and last names as plain text (LaTeX accents decoded)."""
    return " ".join(str(part) for part in [*person.rich_prelast_names, *person.rich_last_names])


def author_part(entry) -> str:
    """The label's authors: "Feichtenhofer", "Loshchilov and Hutter", "Fan et al." (editors, else the title)."""
    persons = entry.persons.get("author") or entry.persons.get("editor")
    if not persons:
        return str(Text.from_latex(entry.fields.get("title", entry.key)))
    if len(persons) == 1:
        return _last_names(persons[0])
    if len(persons) == 2:
        return f"{_last_names(persons[0])} and {_last_names(persons[1])}"
    return f"{_last_names(persons[0])} et al."


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Authors, year", with a, b, ... after the year of entries whose labels would be equal, in the
    order of the sorted entries."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        bases = [f"{author_part(e)}{SEPARATOR}{e.fields.get('year', 'n.d.')}" for e in entries]
        repeated = Counter(bases)
        seen: Counter = Counter()
        for base in bases:
            if repeated[base] == 1:
                yield base
            else:
                yield base + "abcdefghijklmnopqrstuvwxyz"[seen[base]]
                seen[base] += 1


class AuthorYearStyle(UnsrtStyle):
    """pybtex's unsrt entries, labelled and sorted by author and year."""

    default_label_style = NAME
    default_sorting_style = "author_year_title"


@node
def labelled_year(children, data):
    """The year part of the entry's label ("2017a"), where the plain ``year`` node would give "2017"."""
    assert not children
    return Text(data["formatted_entry"].label.rsplit(SEPARATOR, 1)[-1])


class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        authors = self.person.author_or_editor_or_title(full="s" in role_name)
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text, reference[join(sep=self.author_year_sep)[authors, labelled_year]], post_text
        ]


class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        authors = self.person.author_or_editor_or_title(full="s" in role_name)
        return join(sep=self.text_reference_sep)[
            authors,
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[pre_text, reference[labelled_year], post_text],
                self.bracket.right,
            ],
        ]


class _Year(ExtraYearReferenceStyle):
    def inner(self, role_name):
        return reference[labelled_year]


@dataclass
class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author_year reference style, with the year of the label (2017a)."""

    def __post_init__(self):
        self.styles.extend(
            [
                _Parenthetical(
                    bracket=self.bracket_parenthetical,
                    person=self.person,
                    author_year_sep=self.author_year_sep,
                    pre_text_sep=self.pre_text_sep,
                    post_text_sep=self.post_text_sep,
                ),
                _Textual(
                    bracket=self.bracket_textual,
                    person=self.person,
                    text_reference_sep=self.text_reference_sep,
                    pre_text_sep=self.pre_text_sep,
                    post_text_sep=self.post_text_sep,
                ),
                ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
                ExtraLabelReferenceStyle(bracket=self.bracket_label),
                _Year(bracket=self.bracket_year),
                ExtraEmptyReferenceStyle(),
            ]
        )
        GroupReferenceStyle.__post_init__(self)


pybtex.plugin.register_plugin("pybtex.style.labels", NAME, AuthorYearLabelStyle)
pybtex.plugin.register_plugin("pybtex.style.formatting", NAME, AuthorYearStyle)
register_plugin("sphinxcontrib.bibtex.style.referencing", f"{NAME}_label", AuthorYearLabelReferenceStyle)


def setup(app: Sphinx) -> dict:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
