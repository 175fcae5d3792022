"""The bottom layer, importing nothing of ours: settings, the versioned records, the stage
declarations, durations, vocabulary, URL and text safety, and the feed file formats."""
