"""Federated training on Flower: each site trains under its own governance and sends only weight updates."""
