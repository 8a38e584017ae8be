"""The one class vocabulary (ssinfnet.data.classes) and the modules that read it keep their bytes."""
import numpy as np

from ssinfnet.data.classes import (CLASS_LABELS, CLASS_NAMES, CONSOLIDATION, GGO, REGIONS, class_rgb)
from ssinfnet.evaluation import paper_metrics
from ssinfnet.evaluation.tables import MULTI_COLUMNS
from ssinfnet.stats import radiomics
from ssinfnet.training.export import TASK_CLASSES


def test_names_labels_and_codes():
    assert (GGO, CONSOLIDATION) == (1, 2)
    assert CLASS_NAMES[GGO] == "ggo" and CLASS_LABELS[GGO] == "GGO"
    assert CLASS_NAMES[CONSOLIDATION] == CLASS_LABELS[CONSOLIDATION] == "consolidation"
    assert REGIONS == {"overall": (1, 2), "ggo": (1,), "consolidation": (2,)}


def test_class_rgb_colours_a_label_map():
    assert class_rgb(np.array([[0, 1, 2]])).tolist() == [[[0, 0, 0], [255, 0, 0], [0, 204, 0]]]


def test_readers_share_the_vocabulary_and_keep_the_written_strings():
    assert paper_metrics.MULTICLASS_NAMES is CLASS_NAMES
    assert radiomics.REGION_LABELS is REGIONS
    assert MULTI_COLUMNS == ("GGO meanDic", "consolidation meanDic")  # runs/*/manifest.json keys
    assert TASK_CLASSES["multi"] == ("background", "GGO", "consolidation")  # in exported model files
