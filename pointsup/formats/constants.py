"""The constants of the format converters, in one place (see docs/formats.md)."""

from __future__ import annotations

#: formats ``pointsup convert --from`` reads into COCO
IMPORT_FORMATS = ("yolo", "voc", "cvat", "labelstudio")
#: formats ``pointsup convert --to`` writes P_N point files in
EXPORT_FORMATS = ("cvat", "labelstudio")

#: the names of the stored point labels (P_N ``point_labels``: 1 object, 0 background)
POINT_LABEL_NAMES = {1: "object", 0: "background"}
#: name to stored label, for readers (compared in lower case)
POINT_LABEL_VALUES = {name: value for value, name in POINT_LABEL_NAMES.items()}

#: how far (pixels) a box, polygon or point may reach past the image border before it is an
#: error (the same tolerance as :data:`pointsup.points.format.BOX_TOLERANCE`)
BORDER_TOLERANCE = 1.0

#: image file suffixes looked for beside a YOLO label file (compared in lower case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: class-name files looked for in a YOLO label folder and the two folders above it, in order
YOLO_NAME_FILES = ("classes.txt", "obj.names", "data.yaml", "dataset.yaml")
#: label files in a YOLO folder that are not per-image labels
YOLO_NON_LABEL_FILES = frozenset({"classes.txt", "obj.names", "notes.txt", "readme.txt"})

#: the CVAT for images XML version read and written
CVAT_VERSION = "1.1"
#: the attribute of a CVAT ``points`` shape that holds a point's label (object / background)
CVAT_POINT_ATTRIBUTE = "point_label"
#: the attribute of a CVAT ``box`` marking a crowd region (``1``)
CVAT_CROWD_ATTRIBUTE = "iscrowd"

#: Label Studio control names (``from_name``) and image object name (``to_name``) of exports;
#: the labelling configuration in docs/formats.md uses the same names
LABEL_STUDIO_BOX_CONTROL = "label"
LABEL_STUDIO_POLYGON_CONTROL = "polygon"
LABEL_STUDIO_POINT_CONTROL = "point"
LABEL_STUDIO_IMAGE = "image"
#: drawn size of an exported keypoint, in percent of the image width
LABEL_STUDIO_POINT_WIDTH = 0.5
#: region meta text marking a crowd rectangle
LABEL_STUDIO_CROWD_TEXT = "iscrowd"
#: task ``data`` keys holding the image size, written so that images without objects keep it
LABEL_STUDIO_SIZE_KEYS = ("width", "height")

#: at most this many characters of a file's offending line are quoted in an error
QUOTE_LIMIT = 80
