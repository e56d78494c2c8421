"""Annotation cost: what a form of supervision costs per instance and per dataset, how much
data (and so how many hours) each form needs to reach a target AP, and subsets of a COCO
dataset chosen to fit an annotation budget (the paper's §3.3.3, Appendix D, Table 7, Figure 9).
"""
