"""Converters between pointsup's COCO / P_N files and other annotation formats.

Imports (into COCO, boxes and polygons, points where the format carries them): YOLO detection and
segmentation (:mod:`.yolo`), Pascal VOC XML (:mod:`.voc`), CVAT for images 1.1 XML (:mod:`.cvat`)
and Label Studio JSON (:mod:`.labelstudio`). Exports of P_N points: CVAT XML and Label Studio JSON.
:mod:`.registry` is the common interface, :mod:`.geometry` the coordinate conversions,
:mod:`.constants` the names and limits; docs/formats.md describes each format's conventions.
"""
