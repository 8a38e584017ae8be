import pytest

from ssinfnet.data.classes import BACKGROUND, CLASS_NAMES, CONSOLIDATION, GGO
from ssinfnet.evaluation import published as pub

G, C, B = CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION], CLASS_NAMES[BACKGROUND]
OVERALL = "overall_with_background"


def test_known_numbers_with_their_citation():
    p = pub.lookup("Table II", "SInfNet", "infection")
    assert (p.mean, p.error, p.ours) == (0.39, 0.059, "sinfnet")
    assert p.citation.startswith(pub.DRAFT) and p.citation.endswith("Table II")
    assert pub.lookup("Table II", "SSInfNet", "infection", "auc").mean == 0.9883
    assert pub.lookup("Table III", "SSInfNet", OVERALL).mean == 0.56
    assert pub.lookup("Table III", "SInfNet + data aug(0.5)", C, "precision").error == 0.106
    assert pub.lookup("Table V", "SSInfNet", G).mean == 0.86
    assert pub.lookup("Table V", "SSInfNet", G).ours == "multi_ssinfnet_gt_prior"
    assert pub.lookup("Table VI", "SSInfNet", "severity", "micro_f1").mean == 0.55
    assert [p.mean for p in pub.JTM_ABSTRACT] == [0.63, 0.55, 0.49]
    assert pub.JTM_MEDIATION["significant_ggo"].mean == 37 and pub.JTM_MEDIATION["patients"].source == pub.JTM


def test_a_number_the_texts_do_not_print_is_refused():
    with pytest.raises(KeyError, match="Table V prints no f1 for 'SSInfNet', class 'background'"):
        pub.lookup("Table V", "SSInfNet", B)  # garbled in the text we have: left out, not guessed
    with pytest.raises(ValueError, match="no published table 'Table S7'"):
        pub.published_table("Table S7")


@pytest.mark.parametrize("method", ["SInfNet", "SInfNet + data aug(0.4)", "SInfNet + data aug(0.5)", "SSInfNet",
                                    "SSInfNet + data aug"])
def test_table_iii_overall_is_the_mean_of_its_three_classes(method):
    """A transcription check: the draft's "overall" averages GGO, consolidation and background."""
    f1 = {c: pub.lookup("Table III", method, c).mean for c in (G, C, B, OVERALL)}
    assert f1[OVERALL] == pytest.approx((f1[G] + f1[C] + f1[B]) / 3, abs=0.015)


def test_every_row_is_sourced_and_in_range():
    t = pub.published_table()
    assert list(t.columns) == pub.TABLE_COLUMNS and len(t) > 150
    assert t.source.isin([pub.JTM, pub.DRAFT]).all() and t.table.str.len().gt(0).all()
    scores = t[t.metric.isin(["f1", "iou", "recall", "precision", "auc", "micro_f1"])]
    assert scores["mean"].between(0, 1).all()
    assert (scores.error.dropna() >= 0).all()
    assert len(pub.published_table("Table II")) == 25  # 5 methods x 5 metrics


def test_a_transcription_with_a_missing_cell_is_refused():
    with pytest.raises(ValueError, match="Table X, m: 3 cells, expected 2"):
        pub._rows("src", "Table X", "m | 0.1 0.2 0.3", ("infection",), ("f1",), {})
