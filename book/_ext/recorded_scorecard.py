"""The scorecard directives of the results page.

``build-scorecard``: the scorecard of this build, one table of every claim, read back from the
tables the executed chapters glued (:func:`gainbook.records.scorecard_rows`), in chapter order:

    ```{build-scorecard}
    ```

The chapters are the executed copies beside the page's source (``notebooks/NN_*.ipynb`` under
the book's root, where ``book/build.py`` stages them); the page depends on them. A chapter
that glued no scorecard adds no rows. Under the table, a figure shows every comparison's
difference and interval against zero, coloured by its claim's verdict
(:func:`gainbook.scorecard.scorecard_figure`), inline as SVG with a caption; a scorecard
without a number to plot has none.

``recorded-scorecard``: a scorecard recorded by :mod:`gainbook.records` (a larger profile than
this build's), shown with its provenance.

    ```{recorded-scorecard} records/redesign.json
    ```

renders what ran (the record's date, commit, machine, commands and each chapter's time), a
warning naming every module and chapter whose code changed since (or a line saying the code is
unchanged since the record, and that this is all it checks: the verdicts are the record's), and
the table: claim, the paper's number, ours, the verdict, the chapter and the parameters a
chapter ran with besides the profile. The path is relative to the page; a missing or malformed
record is a build error that names it and the field. The page depends on the record, the
chapters and every module they import (:func:`gainbook.records.code_files`), so an incremental
build after an edit to any of them renders it again. ``recorded_scorecard_notebooks`` (a
Sphinx setting) names the chapters' folder; default: the repository's ``notebooks/``.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

COLUMNS = ("claim", "paper", "ours: difference in points [interval]", "verdict", "chapter",
           "run with")
BUILD_COLUMNS = COLUMNS[:-1]


def _parameters(parameters: dict[str, Any]) -> str:
    extra = {k: v for k, v in parameters.items() if k != "profile"}
    return ", ".join(f"{k} = {v}" for k, v in extra.items()) or "–"


def record_table_rows(record: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table's rows, one per scorecard row of every chapter run, in the record's order."""
    return [(row["claim"], row["paper"], row["ours"], row["verdict"], str(row["chapter"]),
             _parameters(chapter["parameters"]))
            for chapter in record["chapters"] for row in chapter["rows"]]


def provenance(record: dict[str, Any]) -> str:
    """One sentence: when, where and how the record ran."""
    machine = record["machine"]
    times = ", ".join(f"{c['notebook'][:2]} {c['seconds']:.0f} s" for c in record["chapters"])
    return (f"Recorded {record['recorded'][:10]} at commit {record['commit'][:12]} on "
            f"{machine['cpus']} CPU cores (torch {machine['torch']}), profile "
            f"{record['profile']!r}, by: {record['command']}. Chapter times: {times}.")


def _paragraph(text: str) -> nodes.paragraph:
    return nodes.paragraph(text, text)


def _table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = COLUMNS,
           kind: str = "recorded-scorecard") -> nodes.table:
    table = nodes.table(classes=[kind])
    group = nodes.tgroup(cols=len(columns))
    table += group
    for _ in columns:
        group += nodes.colspec(colwidth=1)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    for parent, cells in [(head, columns), *((body, row) for row in rows)]:
        line = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += _paragraph(text)
            line += entry
        parent += line
    return table


def status_text(changed: list[str]) -> str:
    """What the staleness check found, worded as what it checks: the code, not the verdicts."""
    if changed:
        return ("The code has changed since this record, in: "
                f"{', '.join(changed)}. Its verdicts are those of the commit it names; rerun its "
                "commands to bring it up to date.")
    return ("The code is unchanged since this record: every chapter's code cells, and every "
            "gainlib and gainbook module the chapters import now (followed through their "
            "imports), hash as the record says they did when it ran. That is all this checks: "
            "the verdicts, times and provenance are as the record states them, not recomputed "
            "by this build.")


def figure_caption(plotted: int, claims: int, left_out: int) -> str:
    """The figure's caption: what it plots, and how many claims it leaves out."""
    from gainbook.stats import coverage_text

    text = (f"The scorecard at a glance: the table's {plotted} paired "
            f"difference{'s' * (plotted != 1)}, from "
            f"{claims} claim{'s' * (claims != 1)}, each as a point with its {coverage_text()} "
            "interval as a bar, in points, against zero, coloured by its claim's verdict. A "
            "claim's own comparison says which side of zero it expects (following the lamp "
            "less is below zero).")
    if left_out:
        text += (f" {left_out} claim{'s' * (left_out != 1)} of the table "
                 f"{'have' if left_out != 1 else 'has'} no difference to plot (not run on this "
                 "profile, or summed up in words) and "
                 f"{'are' if left_out != 1 else 'is'} not shown.")
    return text


def _svg(figure: Any, label: str) -> str:
    """``figure`` as an inline ``<svg>`` element: text as text (small, and it scales with the
    page), no XML header, no date (the same scorecard gives the same page), labelled for
    screen readers, no wider than the page, and its style rule (matplotlib's ``*{...}``)
    confined to itself rather than the whole page."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "build-scorecard"}):
        figure.savefig(buffer, format="svg", metadata={
            "Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):].replace("*{", "svg.scorecard-figure *{", 1)
    return text.replace("<svg", f'<svg class="scorecard-figure" role="img" '
                                f'aria-label="{html.escape(label)}" '
                                'style="max-width: 100%; height: auto"', 1)


def figure_nodes(rows: list[dict[str, Any]]) -> list[nodes.Node]:
    """The scorecard's figure (:func:`gainbook.scorecard.scorecard_figure`) of ``rows`` (as
    :func:`gainbook.records.scorecard_rows` reads them) inline, with its caption; none when
    no row has a difference to plot. An unknown verdict is a ValueError."""
    from gainbook.scorecard import parse_ours, scorecard_figure

    counts = [len(parse_ours(row["ours"])) for row in rows]
    if not any(counts):
        return []
    claims = sum(1 for n in counts if n)
    caption = figure_caption(sum(counts), claims, len(rows) - claims)
    label = (f"The scorecard's {sum(counts)} paired differences with their intervals, "
             "against zero, coloured by verdict")
    svg = _svg(scorecard_figure(rows), label)
    figure = nodes.figure(classes=["build-scorecard-figure"])
    figure += nodes.raw("", svg, format="html")
    figure += nodes.caption(caption, caption)
    return [figure]


class RecordedScorecard(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from gainbook.records import changed_since, code_files, load_record

        relative, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        self.env.note_dependency(relative)
        notebooks = self.config.recorded_scorecard_notebooks
        try:
            record = load_record(path)
            files = code_files(record, notebooks)
        except (OSError, ValueError) as error:
            raise self.error(f"recorded-scorecard: cannot read {self.arguments[0]}: {error}")
        for file in files:           # an edit to the code renders the page again
            self.env.note_dependency(str(file))
        changed = changed_since(record, notebooks)
        status = _paragraph(status_text(changed))
        if changed:
            status = nodes.warning("", status)
        return [_paragraph(provenance(record)), status, _table(record_table_rows(record))]


class BuildScorecard(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        import nbformat

        from gainbook.records import scorecard_rows
        from gainbook.scorecard import verdict_label

        chapters = sorted((Path(self.env.srcdir) / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        found = []
        for chapter in chapters:
            self.env.note_dependency(str(chapter))
            try:
                found += scorecard_rows(nbformat.read(chapter, as_version=4))
            except (OSError, ValueError) as error:
                raise self.error(f"build-scorecard: cannot read {chapter.name}: {error}")
        if not found:
            raise self.error("build-scorecard: no executed chapter glued a scorecard under "
                             f"{Path(self.env.srcdir) / 'notebooks'}")
        rows = [(r["claim"], r["paper"], r["ours"], verdict_label(r["verdict"]), str(r["chapter"]))
                for r in found]
        try:
            figure = figure_nodes(found)
        except ValueError as error:
            raise self.error(f"build-scorecard: cannot draw the figure: {error}")
        return [_table(rows, BUILD_COLUMNS, "build-scorecard"), *figure]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("recorded_scorecard_notebooks", None, "env")
    app.add_directive("recorded-scorecard", RecordedScorecard)
    app.add_directive("build-scorecard", BuildScorecard)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
