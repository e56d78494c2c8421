"""The point-labelling web tool (``pointsup annotate``)."""
