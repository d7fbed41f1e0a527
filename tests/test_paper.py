"""The paper's numbers as transcribed in gainbook.paper: checked against each other, since the
paper repeats several of them and Table 7's "overall" is the mean of its two scenarios."""

import pytest

from gainbook import paper


def _val(rows, method, **where):
    hits = [r for r in rows if r["method"] == method and all(r[k] == v for k, v in where.items())]
    assert len(hits) == 1, (method, where, hits)
    return hits[0]["val mIoU"]


@pytest.mark.parametrize("method,table", [("GAIN_ext^b-SEC", paper.TABLE_3), ("GAIN_ext^b", paper.TABLE_3),
                                          ("GAIN_ext^p-SEC", paper.TABLE_4), ("GAIN_ext^p", paper.TABLE_4)])
def test_tables_3_and_4_repeat_table_1(method, table):
    kind = "B" if "^b" in method else "P"
    assert _val(table, method, **{"extra labels": 200}) == _val(
        paper.TABLE_1_EXTRA, method, **{"training set": f"10K W + 200 {kind}"})
    if method != "GAIN_ext^p":   # Table 1's 1.4K-mask GAIN_ext^p row is not in our copy
        assert _val(table, method, **{"extra labels": 1464}) == _val(
            paper.TABLE_1_EXTRA, method, **{"training set": f"10K W + 1.4K {kind}"})


def test_more_extra_labels_never_hurt_in_tables_3_and_4():
    for table in (paper.TABLE_3, paper.TABLE_4):
        for method in {r["method"] for r in table}:
            values = [r["val mIoU"] for r in table if r["method"] == method]
            assert values == sorted(values) and len(values) == 4


def test_table_7_overall_is_the_mean_of_its_two_scenarios():
    for row in paper.TABLE_7:
        mean = (row["boat without water"] + row["water without boat"]) / 2
        assert abs(row["overall"] - mean) <= 0.5, row


def test_crf_helps_every_sec_row():
    without = {r["method"].replace(" w/o CRF", ""): r["val mIoU"] for r in paper.TABLE_6}
    assert without["GAIN-SEC"] < _val(paper.TABLE_1_IMAGE_LEVEL, "GAIN-SEC")
    assert without["SEC"] < _val(paper.TABLE_1_IMAGE_LEVEL, "SEC (baseline)")


def test_paper_table_indexes_by_method():
    frame = paper.paper_table(paper.TABLE_8)
    assert list(frame.index) == ["DenseNet", "GAIN_ext^b", "GAIN_ext^b"]
    assert frame["accuracy"].tolist() == [42.30, 58.96, 73.00]


def test_extra_label_counts_keep_the_papers_shares():
    from gainbook.paper import EXTRA_LABEL_COUNTS, extra_label_count

    assert [extra_label_count(n, 10_582) for n in EXTRA_LABEL_COUNTS] == [200, 400, 900, 1464]
    assert [extra_label_count(n, 1500) for n in EXTRA_LABEL_COUNTS] == [28, 57, 128, 207]
    assert extra_label_count(0, 1500) == 0
    # Sec. 5.2-5.3: shares of the camera's 700 and the workpiece's 6,118 images.
    assert extra_label_count(40, 700, paper_train=700) == 40
    assert [extra_label_count(n, 2000, paper_train=6118) for n in (60, 120)] == [20, 40]
    with pytest.raises(ValueError):
        extra_label_count(200, 0)


def test_table_2_rows_have_21_classes_and_agree_with_tables_1_3_4():
    from gainbook.paper import (TABLE_1_EXTRA, TABLE_1_IMAGE_LEVEL, TABLE_2, TABLE_3, TABLE_4, VOC_TABLE_COLUMNS)

    assert len(VOC_TABLE_COLUMNS) == 21
    for row in TABLE_2:
        assert all(isinstance(row[c], float) and 0 < row[c] < 100 for c in VOC_TABLE_COLUMNS), row["method"]
        # The paper's mIoU is the mean of its 21 IoUs, to its rounding.
        mean = sum(row[c] for c in VOC_TABLE_COLUMNS) / 21
        if row["method"] == "GAIN_ext^{b,p}":     # printed mIoU off by 0.3 in the paper itself
            assert abs(mean - row["mIoU"]) < 0.35
        else:
            assert abs(mean - row["mIoU"]) < 0.06, (row["method"], row["training set"], mean)
    by_key = {(r["method"], r["training set"]): r["val mIoU"] for r in TABLE_1_IMAGE_LEVEL + TABLE_1_EXTRA}
    for row in TABLE_2:
        if (row["method"], row["training set"]) in by_key:
            assert row["mIoU"] == by_key[(row["method"], row["training set"])]
    ext_b = [r["mIoU"] for r in TABLE_2 if r["method"] == "GAIN_ext^b"]
    assert ext_b == [r["val mIoU"] for r in TABLE_3 if r["method"] == "GAIN_ext^b"
                     and r["extra labels"] in (200, 1464)]
    ext_p = [r["mIoU"] for r in TABLE_2 if r["method"] == "GAIN_ext^p"]
    assert ext_p == [r["val mIoU"] for r in TABLE_4 if r["method"] == "GAIN_ext^p"
                     and r["extra labels"] in (200, 1464)]


def test_quotes_read_the_tables():
    # What the chapters print for the paper, against the paper's text (Secs. 4.2, 5.1-5.3).
    assert paper.quote("table1.gain-sec-minus-sec.val") == "4.6"      # "by 4.6 ... percent"
    assert paper.quote("table4.gain-ext-p-most.val") == "64.1"
    assert paper.quote("table7.gain-ext-p-most.boat-masks") == "78"
    assert paper.quote("table7.vgg.water-without-boat") == "30 %"
    assert paper.quote("table8.gain-ext-b-most.accuracy") == "73.00 %"
    assert paper.quote("camera.vgg.set2") == "close to 50 %"
    assert paper.quote("voc.fewest-labels.share") == "1.9 %"
    assert paper.quote("voc.most-labels.name") == "1.4K"
    assert paper.quote("training.epochs") == "35"
    # Table 6's CRF adds 4.5 (GAIN-SEC) to 5.9 points (SEC, GAIN_ext^b-SEC) of val mIoU.
    assert (paper.quote("table6.crf-gain-least.val"), paper.quote("table6.crf-gain-most.val")) == (
        "4.5", "5.9")
    assert paper.TABLE_6_CRF_GAIN["GAIN_ext^p-SEC w/o CRF"] == 5.7


def test_every_quote_key_is_well_formed_and_every_value_holds_a_number():
    import re

    word = r"[a-z][a-z0-9]*"
    key = re.compile(rf"{word}(?:-{word})*(?:\.{word}(?:-{word})*)+")
    assert paper.QUOTES
    for name, text in paper.QUOTES.items():
        assert key.fullmatch(name), name
        assert re.search(r"\d", text), (name, text)


def test_an_unknown_quote_names_the_key_and_its_neighbours():
    with pytest.raises(KeyError, match="table7.gain.boat-water.*table7.gain.boat-without-water"):
        paper.quote("table7.gain.boat-water")


def test_count_name_and_share_are_the_papers_notation():
    assert [paper.count_name(n) for n in (200, 1464, 6118)] == ["200", "1.4K", "6.1K"]
    assert [paper.extra_label_share(n) for n in paper.EXTRA_LABEL_COUNTS] == [1.9, 3.8, 8.5, 13.8]
    with pytest.raises(ValueError, match="paper_train"):
        paper.extra_label_share(200, 0)
