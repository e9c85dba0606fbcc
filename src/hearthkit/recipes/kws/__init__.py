"""Spoken term search (VISION §6 recipe 7): CTC posteriorgram indexes of collections and keyword scoring."""
