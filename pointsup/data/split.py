"""Split a COCO dataset that ships without a validation split, by a fixed rule on image ids.

The rule: image ``i`` goes to the validation split iff ``i["id"] % val_every == val_remainder``;
every other image goes to the training split. With the defaults (``val_every=3``,
``val_remainder=2``) one image in three is held out: ids 2, 5, 8, 11, ... For example the 18
images of ``fruits_nuts`` (ids 0..17) give 12 training images and 6 validation images (ids 2, 5,
8, 11, 14, 17). The rule depends on the ids alone, so it is the same on every machine, in every
run and whatever the order of the images in the file.
"""

from __future__ import annotations

from typing import Any


def split_by_image_id(coco: dict[str, Any], val_every: int = 3, val_remainder: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a COCO instances dict into (train, val) by image id (see the module docstring).

    Args:
        coco: a COCO dict with ``images`` (each with an integer ``id``), ``annotations`` (each with
            an ``image_id``) and ``categories``.
        val_every: hold out one image id in this many (at least 2).
        val_remainder: the held-out ids are those with ``id % val_every == val_remainder``
            (``0 <= val_remainder < val_every``).

    Returns:
        Two COCO dicts. Each keeps every other top-level entry of ``coco`` (``categories``,
        ``info``, ``licenses``, ...) and only its own images and the annotations of those images,
        in their original order; annotations of images not in ``coco["images"]`` are dropped. The
        image, annotation and category dicts are shared with ``coco``, not copied.

    Raises:
        ValueError: ``val_every`` or ``val_remainder`` out of range, or an image id that is not an
            integer.
    """
    if val_every < 2:
        raise ValueError(f"val_every must be at least 2, not {val_every}")
    if not 0 <= val_remainder < val_every:
        raise ValueError(f"val_remainder must be in 0..{val_every - 1}, not {val_remainder}")
    val_ids: set[int] = set()
    train_ids: set[int] = set()
    for image in coco["images"]:
        image_id = image["id"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise ValueError(f"image ids must be integers to split by id, not {image_id!r}")
        (val_ids if image_id % val_every == val_remainder else train_ids).add(image_id)

    def subset(ids: set[int]) -> dict[str, Any]:
        part = {key: value for key, value in coco.items() if key not in ("images", "annotations")}
        part["images"] = [image for image in coco["images"] if image["id"] in ids]
        part["annotations"] = [ann for ann in coco.get("annotations", []) if ann["image_id"] in ids]
        return part

    return subset(train_ids), subset(val_ids)
