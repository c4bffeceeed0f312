"""The parquet layout every converter writes (docs/design.md, section 5), as one fixed Arrow schema.

One ``extra_info`` struct serves all sources (absent fields are null) so that files from different
converters concatenate in ``RLHFDataset`` (``datasets.concatenate_datasets`` needs equal features).
The ``images`` column carries Hugging Face ``Image`` feature metadata, so ``datasets`` decodes each
``{"bytes", "path"}`` entry to a PIL image whether the bytes are embedded or only the path is stored:
that is what lets veRL's own ``RLHFDataset`` read path-only rows.
"""

from __future__ import annotations

import datasets
import pyarrow as pa

from verl_ext.tools import AGENT_NAME, TOOL_NAME

#: Name of the region-zoom tool in the tool YAML; its kwargs live under this key of ``tools_kwargs``.
ZOOM_TOOL = TOOL_NAME
#: Rows that may zoom run the zoom agent loop (it keeps zoom_records in every trajectory of a batch).
TOOL_AGENT = AGENT_NAME
SINGLE_TURN_AGENT = "single_turn_agent"

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
#: The zoom tool finds the original image here: a path, or the bytes for embedded images.
CREATE_KWARGS = pa.struct([("image_path", pa.string()), ("image_bytes", pa.binary())])
TOOLS_KWARGS = pa.struct([(ZOOM_TOOL, pa.struct([("create_kwargs", CREATE_KWARGS)]))])
BOXES = pa.list_(pa.list_(pa.float64()))

EXTRA_INFO = pa.struct(
    [
        ("index", pa.int64()),
        ("split", pa.string()),
        ("image_width", pa.int64()),
        ("image_height", pa.int64()),
        ("need_tools_kwargs", pa.bool_()),
        ("tools_kwargs", TOOLS_KWARGS),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("options", pa.list_(pa.string())),
        ("answer_type", pa.string()),
        ("category", pa.string()),
        ("cycle_category", pa.string()),
        ("source_id", pa.string()),
        ("evidence_boxes", BOXES),
        ("ref_id", pa.int64()),
        ("ann_id", pa.int64()),
        ("image_id", pa.int64()),
        ("sent_id", pa.int64()),
        ("expression", pa.string()),
    ]
)
EXTRA_INFO_FIELDS = frozenset(EXTRA_INFO.names)


def row_schema(ground_truth: pa.DataType) -> pa.Schema:
    """The full row schema for a ground-truth type, with the ``Image`` feature metadata ``datasets`` reads."""
    schema = pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("images", pa.list_(IMAGE)),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", ground_truth)])),
            ("extra_info", EXTRA_INFO),
            ("agent_name", pa.string()),
        ]
    )
    features = datasets.Features.from_arrow_schema(schema)
    features["images"] = datasets.List(datasets.Image())
    return features.arrow_schema


#: Grounding rows: ground truth ``[x1, y1, x2, y2]`` in original pixels.
GROUNDING_SCHEMA = row_schema(pa.list_(pa.float64()))
#: VQA and multiple-choice rows: ground truth is a string (the correct letter for multiple choice).
ANSWER_SCHEMA = row_schema(pa.string())
