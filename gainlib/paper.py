"""The paper's own numbers, as data, for the chapters to show beside ours.

Source: K. Li, Z. Wu, K.-C. Peng, J. Ernst and Y. Fu, "Guided Attention Inference Network",
IEEE TPAMI (extended version of "Tell Me Where to Look: Guided Attention Inference Network",
CVPR 2018). Numbers are copied from the tables named in each constant, in percent; "-" in the
paper is ``None`` here. They were measured on PASCAL VOC 2012 with VGG16-based networks, so on
the synthetic benchmark only orderings and gaps can be compared, never absolute values.
"""

from __future__ import annotations

__all__ = ["TABLE_1_IMAGE_LEVEL", "paper_table"]

#: Table 1 (rows with purely image-level labels that the book reproduces): mIoU of weakly
#: supervised segmentation on VOC 2012 seg. val and test. "SEC (baseline)" uses cues from a
#: plain classifier's attention (CAM); GAIN-SEC feeds SEC with GAIN's attention; "GAIN" uses
#: the paper's own segmentation framework (Fig. 4) on GAIN's attention.
TABLE_1_IMAGE_LEVEL: list[dict[str, object]] = [
    {"method": "SEC (baseline)", "training set": "10K weak", "val mIoU": 50.7, "test mIoU": 51.7},
    {"method": "GAIN-SEC", "training set": "10K weak", "val mIoU": 55.3, "test mIoU": 56.8},
    {"method": "GAIN", "training set": "10K weak", "val mIoU": 59.4, "test mIoU": 59.6},
]


def paper_table(rows: list[dict[str, object]]) -> "object":
    """``rows`` as a pandas DataFrame indexed by method (for display in a chapter)."""
    import pandas as pd

    return pd.DataFrame(rows).set_index("method")
