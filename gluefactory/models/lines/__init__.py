"""Line-segment detectors and point+line extractors (``lines.lsd``, ``lines.wireframe``).

Their outputs follow the extractor contract (docs/extractors.md, "Lines"): ``lines``
(B, L, 2, 2) endpoints in the library's pixel convention, ``line_scores`` (B, L) and
``line_mask`` (B, L) (True = a real line, False = padding).
"""
