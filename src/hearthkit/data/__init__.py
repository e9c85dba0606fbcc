"""The governed data path from the store to training batches."""
