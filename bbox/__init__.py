"""Watch bounding boxes: box utilities and a catalogue-to-photo scene simulator for training data."""
