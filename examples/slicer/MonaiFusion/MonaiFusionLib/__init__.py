"""The half of the MonaiFusion Slicer module that does not need Slicer (testable in plain Python)."""
