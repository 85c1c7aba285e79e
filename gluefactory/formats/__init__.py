"""On-disk layouts: one module per format, each with its reader, writer and checks.

- :mod:`.records`: the records every reader returns and every writer takes
  (:class:`~.records.View`, :class:`~.records.Scene`) and the one pose/intrinsics check;
- :mod:`.depth`: depth maps (HDF5 dataset ``depth`` or 16-bit PNG of depth * 256), the
  one unknown-depth rule and the one resize rule (``nearest-exact``);
- :mod:`.posed`: posed text (``views.txt``, ``pairs.txt``, ``images/``, ``depths/``);
- :mod:`.eth3d`: ETH3D undistorted (COLMAP text calibration with 3D point ids, depth PNG);
- :mod:`.megadepth`: MegaDepth (``scene_info/<scene>.npz``, depth HDF5);
- :mod:`.hpatches`: HPatches sequence folders (``1.ppm .. 6.ppm``, ``H_1_k``);
- :mod:`.features`: hloc-style feature files (one HDF5 group per image or pair).

Datasets, generators, converters and exporters read and write through these modules
only, so that a rule (rotation check, depth key, units, resize) exists once. Every write
is atomic (:mod:`gluefactory.utils.fs`). See docs/architecture.md and docs/datasets.md.
"""
