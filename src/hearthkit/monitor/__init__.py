"""`hearth monitor`: change maps, per-territory figures and a one-page report from a trained change model."""
