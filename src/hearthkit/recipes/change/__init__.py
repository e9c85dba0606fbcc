"""The change recipe: Siamese U-Net change detection on bi-temporal multispectral scenes."""
