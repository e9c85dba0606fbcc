"""The landcover recipe: patch classification or per-pixel segmentation of land-cover classes."""
