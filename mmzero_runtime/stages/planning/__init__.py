"""Estimates for `mmzero plan`: memory of each pod group, wall time of each stage."""
