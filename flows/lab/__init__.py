"""The local lab behind `ferry lab up|down|status`: SSH targets and one HAProxy on loopback addresses."""

from flows.lab.lab import BACKEND, LAB_USER, Lab, LabError, LabState, LabTarget, target_names

__all__ = ["BACKEND", "LAB_USER", "Lab", "LabError", "LabState", "LabTarget", "target_names"]
