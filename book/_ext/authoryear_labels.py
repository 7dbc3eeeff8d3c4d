"""Bibliography labels that read like the book's citations: "[Guo et al., 2023]", not "[GLMH23]".

The chapters cite author-year (``bibtex_reference_style: author_year``); this Sphinx extension
registers the pybtex style ``authoryear``, pybtex's ``plain`` list with author-year labels,
so that a reader who follows a citation lands on a label that matches what they clicked.
Two works with the same label get a letter each: "Wang et al., 2020a", "... 2020b".
"""

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def surname(person) -> str:
    """The last name as the reader sees it: "{\\L}ukasz"-style TeX markup rendered to text."""
    return str(Text.from_latex(" ".join(person.prelast_names + person.last_names)))


def author_year(entry) -> str:
    """"Guo et al., 2023" for four authors, "Jain and Wallace, 2019" for two."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [surname(person) for person in people]
    if len(names) > 2:
        who = f"{names[0]} et al."
    else:
        who = " and ".join(names) or entry.fields.get("title", entry.key)
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(entry) for entry in entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabelStyle


def setup(app):
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
