"""gainbook: the machinery of the GAIN book — not part of the library.

:mod:`gainlib` is the library people install and use on their own data. This package exists to
produce the book's chapters, and needs the ``book`` extra (pandas, matplotlib, ipywidgets,
papermill, ...):

* :mod:`gainbook.cache` — the one run cache: every model the book trains, keyed by its spec and
  by the code its training imports; :mod:`gainbook.pool` trains independent runs side by side;
* :mod:`gainbook.runs` (attention runs) and :mod:`gainbook.segmentation_runs` (segmentation
  networks on attention cues) — the two kinds of run;
* :mod:`gainbook.profiles` — the one table of settings per papermill profile;
* :mod:`gainbook.chapters` — a chapter's set-up, its methods, and the measurements chapters share;
* :mod:`gainbook.studies` — what the chapters measure (attention by region, attention mining,
  the bias and orientation studies);
* :mod:`gainbook.preconditions` — what must hold before a claim can be tested, measured;
* :mod:`gainbook.stats` (paired bootstrap intervals and verdicts) and :mod:`gainbook.scorecard`
  (a claim's verdict from its comparisons);
* :mod:`gainbook.choices` — chapter 7's one-factor-at-a-time design of implementation choices;
* :mod:`gainbook.viz`, :mod:`gainbook.explorer` — tables, figures and the sigma/omega widgets;
  :mod:`gainbook.prose` — the numbers and words the chapters' text quotes (glue);
* :mod:`gainbook.photos` — the real photographs of chapter 1 (bundled with scikit-image);
* :mod:`gainbook.records` — the scorecards read back from executed chapters, and recorded ones;
* :mod:`gainbook.paper` — the paper's tables as data; :mod:`gainbook.reproduce` — the
  paper-scale VOC run (chapter 8) and its command line.
"""
